package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// agentMain runs `podcreds agent`: flags into one Config, validated, then
// run until a signal.
func agentMain(args []string) int {
	cfg, err := parseConfig(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds: invalid configuration:\n%v\n", err)
		return 2
	}
	if err := run(signalContext(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "podcreds: %v\n", err)
		return 1
	}
	return 0
}
