// Command podcreds gives every pod on a Kubernetes node its own short-lived
// AWS credentials through the endpoints unmodified AWS SDKs already use.
//
//	podcreds agent --node-name=$NODE_NAME [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: podcreds agent [flags]

Run the node agent. Flags may also be set in the environment as
PODCREDS_<FLAG> (e.g. PODCREDS_LOG_LEVEL=debug); NODE_NAME, KUBECONFIG and
AWS_REGION are read too. "podcreds agent -h" lists the flags.
`

func main() {
	if len(os.Args) < 2 || os.Args[1] != "agent" {
		if len(os.Args) >= 2 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
			fmt.Print(usage)
			os.Exit(0)
		}
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cfg, err := parseConfig(os.Args[2:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	if err := run(signalContext(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "podcreds: %v\n", err)
		os.Exit(1)
	}
}

// signalContext is cancelled by the first SIGTERM or SIGINT, which starts a
// graceful drain; a second one exits at once.
func signalContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-ch
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "podcreds: second signal, exiting now")
		os.Exit(1)
	}()
	return ctx
}
