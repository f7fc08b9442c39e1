// Command podcreds gives every pod on a Kubernetes node its own short-lived
// AWS credentials through the endpoints unmodified AWS SDKs already use.
//
//	podcreds agent --node-name=$NODE_NAME [flags]
//
// Each component is a subcommand; commands below lists them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand: its name, a line of help, and what it runs.
// run gets the arguments after the name and returns the process's exit
// status; it prints its own errors.
type command struct {
	name, summary string
	run           func(args []string) int
}

// commands lists the subcommands in the order usage shows them.
var commands = []command{
	{"agent", "run the node agent that serves pods their credentials", agentMain},
	{"webhook", "run the admission webhook that onboards pods to the agent", webhookMain},
	{"probe", "ask this container's agent whether it is ready (the kubelet's exec probe)", probeMain},
	{"explain", "say what podcreds makes of a pod: role and why, webhook injection, the agent's live state", explainMain},
	{"uninstall-node", "remove what the agent's -link-setup left on this node (run after the agent is gone)", uninstallNodeMain},
	{"version", "print the version, commit and Go version (also --version)", versionMain},
	{"issuer", "publish the cluster's OIDC issuer (discovery and keys) for AWS to trust", issuerMain},
	{"doctor", "check the chain AWS relies on to accept this cluster's tokens, and say what to fix", doctorMain},
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: podcreds <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\n\"podcreds <command> -h\" lists a command's flags. Flags may also be set in\n" +
		"the environment as PODCREDS_<FLAG> (e.g. PODCREDS_LOG_LEVEL=debug).\n")
	return b.String()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage())
		os.Exit(2)
	}
	switch os.Args[1] {
	case "-h", "--help", "help":
		fmt.Print(usage())
		os.Exit(0)
	case "--version", "-version":
		os.Exit(versionMain(os.Args[2:]))
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	fmt.Fprintf(os.Stderr, "podcreds: unknown command %q\n\n%s", os.Args[1], usage())
	os.Exit(2)
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
