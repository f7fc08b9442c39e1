package loadgen

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTogetherRunsEveryTargetAtOnce checks that a round starts every
// target's load before any ends: each fake run waits until all have begun,
// which never happens if Together ran them one after another.
func TestTogetherRunsEveryTargetAtOnce(t *testing.T) {
	const rounds = 3
	targets := targetsNamed("A", "B", "C")
	var cpu [3]atomic.Int64 // each target's server CPU, in ms, moved by its own runs
	for i := range targets {
		targets[i].CPU = func() (time.Duration, error) { return time.Duration(cpu[i].Load()) * time.Millisecond, nil }
	}
	var mu sync.Mutex
	started, round := 0, 0
	all := make(chan struct{})
	run := func(ctx context.Context, c Config) (Result, error) {
		mu.Lock()
		if started++; started == len(targets) {
			close(all)
		}
		wait := all
		mu.Unlock()
		select {
		case <-wait:
		case <-time.After(10 * time.Second):
			return Result{}, errors.New("the other targets never started: the round ran them one at a time")
		}
		i := int(c.URL[0] - 'A')
		cpu[i].Add(int64(10 * (i + 1))) // A's server spends 10 ms a round, B 20, C 30
		mu.Lock()
		defer mu.Unlock()
		if started++; started == 2*len(targets) { // the last of the round: reset for the next
			started, round = 0, round+1
			all = make(chan struct{})
		}
		return Result{Requests: 100 * (i + 1)}, nil
	}
	series, err := together(t.Context(), rounds, targets, run)
	if err != nil {
		t.Fatal(err)
	}
	if round != rounds {
		t.Fatalf("%d rounds ran, want %d", round, rounds)
	}
	for i, s := range series {
		if s.Name != targets[i].Name || len(s.Results) != rounds {
			t.Fatalf("series %d: %s with %d results", i, s.Name, len(s.Results))
		}
		for _, r := range s.Results {
			if want := time.Duration(10*(i+1)) * time.Millisecond; r.ServerCPU != want {
				t.Errorf("%s: a round's server CPU is %v, want its own %v", s.Name, r.ServerCPU, want)
			}
		}
	}
}

func TestTogetherStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int32
	run := func(_ context.Context, c Config) (Result, error) {
		calls.Add(1)
		if c.URL == "B" {
			return Result{}, boom
		}
		return Result{}, nil
	}
	series, err := together(t.Context(), 5, targetsNamed("A", "B"), run)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "B, round 1") {
		t.Errorf("error %v, want boom naming B, round 1", err)
	}
	if calls.Load() != 2 || len(series[0].Results) != 0 {
		t.Errorf("%d calls, %d results kept; want the first round's two calls and nothing kept", calls.Load(), len(series[0].Results))
	}
}

func TestTogetherRefusesANoisyNeighbour(t *testing.T) {
	targets := targetsNamed("A", "B")
	targets[1].During = func(context.Context) func() { return func() {} }
	_, err := together(t.Context(), 1, targets, func(context.Context, Config) (Result, error) {
		t.Error("a round ran")
		return Result{}, nil
	})
	if err == nil || !strings.Contains(err.Error(), "B: a noisy neighbour") {
		t.Errorf("error %v, want a refusal naming B", err)
	}
}
