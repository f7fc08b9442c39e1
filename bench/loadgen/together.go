package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Together runs every target's load at once in each of rounds rounds, and
// samples each target's server CPU around the round. Interleave compares
// rounds a second or two apart; on a shared machine the CPU time a
// response costs moves by a tenth from one second to the next (the
// neighbours' load, caches, the host's scheduling of this machine). Rounds
// run together meet the same machine: that drift is common to both
// servers' CPU per response, and their ratio within a round keeps only what
// differs between them. Targets must not have During. Series are in the
// order of targets.
func Together(ctx context.Context, rounds int, targets []Target) ([]Series, error) {
	return together(ctx, rounds, targets, Run)
}

// together is Together with the runner injected, so tests can observe what
// runs at once without sending traffic.
func together(ctx context.Context, rounds int, targets []Target, run func(context.Context, Config) (Result, error)) ([]Series, error) {
	series := make([]Series, len(targets))
	for i, t := range targets {
		if t.During != nil {
			return nil, fmt.Errorf("loadgen: %s: a noisy neighbour (During) cannot run together with other targets", t.Name)
		}
		series[i] = Series{Name: t.Name, Config: t.Config, Results: make([]Result, 0, max(rounds, 0))}
	}
	for r := range rounds {
		cpu0 := make([]time.Duration, len(targets))
		for i, t := range targets {
			if t.CPU == nil {
				continue
			}
			var err error
			if cpu0[i], err = t.CPU(); err != nil {
				return series, fmt.Errorf("loadgen: %s: server CPU: %w", t.Name, err)
			}
		}
		results := make([]Result, len(targets))
		errs := make([]error, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Go(func() { results[i], errs[i] = run(ctx, t.Config) })
		}
		wg.Wait()
		// A round counts whole or not at all: its results are compared
		// with each other.
		for i, t := range targets {
			if errs[i] != nil {
				return series, fmt.Errorf("loadgen: %s, round %d: %w", t.Name, r+1, errs[i])
			}
		}
		for i, t := range targets {
			if t.CPU != nil {
				cpu1, err := t.CPU()
				if err != nil {
					return series, fmt.Errorf("loadgen: %s: server CPU: %w", t.Name, err)
				}
				results[i].ServerCPU = cpu1 - cpu0[i]
			}
			series[i].Results = append(series[i].Results, results[i])
		}
	}
	return series, nil
}
