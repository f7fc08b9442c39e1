package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// agentMain runs `podcreds agent`: flags into one Config, validated, then
// run until a signal.
func agentMain(args []string) int {
	cfg, err := parseConfig(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Print(agentUsage())
		return 0
	}
	if err != nil {
		reportProblems(os.Stderr, problems(err))
		return 2
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(os.Stderr, "podcreds agent: warning: %s\n", w)
	}
	if err := run(signalContext(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "podcreds: %v\n", err)
		return 1
	}
	return 0
}

// reportProblems prints every problem, one per line, and a hint, never the
// flag list: a mistake's output fits on a screen, and one mistake's in three
// lines.
func reportProblems(w io.Writer, problems []string) {
	if len(problems) == 1 {
		fmt.Fprintf(w, "podcreds agent: %s\n", problems[0])
	} else {
		fmt.Fprintf(w, "podcreds agent: %d problems with the configuration:\n", len(problems))
		for _, p := range problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	fmt.Fprintln(w, `run "podcreds agent -h" to list every flag`)
}
