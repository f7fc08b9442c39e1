package main

import (
	"context"
	"fmt"
	"runtime/metrics"
	"slices"
	"time"
)

// heapGrowthLimit is how much the live heap may grow across a soak after
// warm-up before the run counts as growing: a fraction of the first third's
// median, above noise from what the load itself holds at any moment.
const heapGrowthLimit = 0.05

// heapSeries samples this process's live heap (what the last collection
// marked live; runtime/metrics, no stop of the world) every interval until
// ctx ends. The soak's agent runs in this process, beside a load whose
// records are allocated before the run, so growth here is the agent's.
func heapSeries(ctx context.Context, interval time.Duration) <-chan []float64 {
	out := make(chan []float64, 1)
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var series []float64
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				metrics.Read(sample)
				series = append(series, float64(sample[0].Value.Uint64()))
			case <-ctx.Done():
				out <- series
				return
			}
		}
	}()
	return out
}

// heapTrend compares the median live heap of the last third of a series
// with that of its first third.
type heapTrend struct {
	first, last float64 // medians, bytes
	samples     int
}

func trendOf(series []float64) heapTrend {
	n := len(series) / 3
	if n == 0 {
		return heapTrend{samples: len(series)}
	}
	med := func(xs []float64) float64 {
		s := slices.Sorted(slices.Values(xs))
		return s[len(s)/2]
	}
	return heapTrend{first: med(series[:n]), last: med(series[len(series)-n:]), samples: len(series)}
}

// flat reports whether the heap grew by at most heapGrowthLimit.
func (h heapTrend) flat() bool { return h.samples >= 3 && h.last <= h.first*(1+heapGrowthLimit) }

func (h heapTrend) String() string {
	return fmt.Sprintf("%s → %s (%+.1f %%, %d samples)", fmtMiB(h.first), fmtMiB(h.last), 100*(h.last/h.first-1), h.samples)
}
