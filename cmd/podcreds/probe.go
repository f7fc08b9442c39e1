package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// probeMain runs `podcreds probe`: the kubelet's exec probe. It asks this
// container's own agent, over the Unix socket --health-socket serves, so
// during an upgrade the new agent's readiness is its own, not that of the
// old agent that shares the node's health port. Exit 0 on 200, 1 otherwise
// with the agent's answer, 2 on bad flags.
func probeMain(args []string) int {
	fs := flag.NewFlagSet("podcreds probe", flag.ContinueOnError)
	socket := fs.String("socket", defaultHealthSocket, "the agent's --health-socket")
	path := fs.String("path", "/readyz", "what to ask: /readyz or /healthz")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path != "/readyz" && *path != "/healthz" {
		fmt.Fprintf(os.Stderr, "podcreds probe: -path %q must be /readyz or /healthz\n", *path)
		return 2
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", *socket)
		},
	}}
	res, err := client.Get("http://agent" + *path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds probe: the agent does not answer on %s (starting, or not run with --health-socket=%s): %v\n", *socket, *socket, err)
		return 1
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "podcreds probe: %s %s: %s\n", *path, res.Status, strings.TrimSpace(string(body)))
		return 1
	}
	return 0
}
