package loadgen

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Target is one thing to measure in an interleaved comparison.
type Target struct {
	// Name labels the target in Series and tables; names should be unique.
	Name   string
	Config Config
	// CPU, if set, samples the server's CPU time before and after each
	// round, for Result.ServerCPU.
	CPU CPUSampler
	// During, if set, starts other load for each of the target's rounds
	// (a noisy neighbour) and returns the function that stops it.
	During func(context.Context) (stop func())
}

// Series is every round's Result for one target, in round order.
type Series struct {
	Name    string
	Config  Config
	Results []Result
}

// Interleave runs every target once per round, for rounds rounds, reversing
// the order of targets every other round (A B, B A, A B, …). On a shared
// machine throughput drifts over time; this ABBA order spreads the drift
// evenly over the targets instead of charging it to whichever runs last.
// It stops at the first error (a bad Config or a cancelled ctx) and returns
// the rounds completed so far with it. Series are in the order of targets.
func Interleave(ctx context.Context, rounds int, targets []Target) ([]Series, error) {
	return interleave(ctx, rounds, targets, Run)
}

// interleave is Interleave with the runner injected, so tests can observe
// the order without sending traffic.
func interleave(ctx context.Context, rounds int, targets []Target, run func(context.Context, Config) (Result, error)) ([]Series, error) {
	var err error
	series := make([]Series, len(targets))
	for i, t := range targets {
		series[i] = Series{Name: t.Name, Config: t.Config, Results: make([]Result, 0, max(rounds, 0))}
	}
	for r := range rounds {
		for k := range targets {
			i := k
			if r%2 == 1 {
				i = len(targets) - 1 - k
			}
			var cpu0 time.Duration
			if sample := targets[i].CPU; sample != nil {
				if cpu0, err = sample(); err != nil {
					return series, fmt.Errorf("loadgen: %s: server CPU: %w", targets[i].Name, err)
				}
			}
			stop := func() {}
			if targets[i].During != nil {
				stop = targets[i].During(ctx)
			}
			res, err := run(ctx, targets[i].Config)
			stop()
			if err != nil {
				return series, fmt.Errorf("loadgen: %s, round %d: %w", targets[i].Name, r+1, err)
			}
			if sample := targets[i].CPU; sample != nil {
				cpu1, err := sample()
				if err != nil {
					return series, fmt.Errorf("loadgen: %s: server CPU: %w", targets[i].Name, err)
				}
				res.ServerCPU = cpu1 - cpu0
			}
			series[i].Results = append(series[i].Results, res)
		}
	}
	return series, nil
}

// Summary is the median of a series' rounds. The median, rather than the
// mean, ignores the odd round spoiled by a neighbour's burst of CPU.
type Summary struct {
	Rounds        int
	RPS           float64
	P50, P90, P99 time.Duration
	// Errors is the total over all rounds: any error makes the other
	// numbers suspect.
	Errors int
	// CPUPerResponse is the median of the rounds' server CPU per
	// successful response (0 without CPU samples).
	CPUPerResponse time.Duration
}

// Summarize returns the per-field medians of results.
func Summarize(results []Result) Summary {
	s := Summary{Rounds: len(results)}
	if len(results) == 0 {
		return s
	}
	rps := make([]float64, len(results))
	p50 := make([]time.Duration, len(results))
	p90 := make([]time.Duration, len(results))
	p99 := make([]time.Duration, len(results))
	cpu := make([]time.Duration, len(results))
	for i, r := range results {
		rps[i], p50[i], p90[i], p99[i] = r.RPS, r.P50, r.P90, r.P99
		cpu[i] = r.CPUPerResponse()
		s.Errors += r.Errors
	}
	s.RPS = median(rps)
	s.P50, s.P90, s.P99 = median(p50), median(p90), median(p99)
	s.CPUPerResponse = median(cpu)
	return s
}

// Summary returns the medians of s's rounds.
func (s Series) Summary() Summary { return Summarize(s.Results) }

// Ratio compares two summaries field by field, as a/b: an RPS ratio above 1
// means a is faster, a latency or CPU ratio above 1 means a is slower. A
// field is 0 when b's is 0.
type Ratio struct {
	RPS, P50, P99, CPU float64
}

// Compare returns a's medians divided by b's.
func Compare(a, b Summary) Ratio {
	return Ratio{
		RPS: div(a.RPS, b.RPS),
		P50: div(float64(a.P50), float64(b.P50)),
		P99: div(float64(a.P99), float64(b.P99)),
		CPU: div(float64(a.CPUPerResponse), float64(b.CPUPerResponse)),
	}
}

// Spread is the distribution of a per-round ratio: its median and quartiles
// over the rounds that have it.
type Spread struct {
	Median, Q1, Q3 float64
	Rounds         int
}

// PairedCPU compares a's server CPU per response with b's round by round:
// Interleave runs round r of a and of b next to each other, so on a shared
// machine the two rounds of a pair meet the same neighbours, and the ratio
// within a pair is steadier than the ratio of the two medians. Rounds where
// either has no CPU figure are left out.
func PairedCPU(a, b Series) Spread {
	var ratios []float64
	for i := range min(len(a.Results), len(b.Results)) {
		x, y := a.Results[i].CPUPerResponse(), b.Results[i].CPUPerResponse()
		if x > 0 && y > 0 {
			ratios = append(ratios, float64(x)/float64(y))
		}
	}
	if len(ratios) == 0 {
		return Spread{}
	}
	slices.Sort(ratios)
	return Spread{Median: median(ratios), Q1: quantile(ratios, 0.25), Q3: quantile(ratios, 0.75), Rounds: len(ratios)}
}

// quantile returns the q-quantile of sorted xs, interpolating linearly
// between the two nearest ranks.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (pos-float64(lo))*(sorted[lo+1]-sorted[lo])
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// median returns the middle of xs (the mean of the two middles when even)
// without reordering the caller's slice.
func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
