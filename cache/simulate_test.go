package cache

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/podcreds/podcreds/metrics"
)

// TestSixHoursOfSteadyTraffic runs three entries of one-hour credentials
// through six hours of steady requests on a fake clock and checks that the
// background refresh alone keeps every request a hit.
func TestSixHoursOfSteadyTraffic(t *testing.T) {
	const (
		entries     = 3
		horizon     = 6 * time.Hour
		step        = 10 * time.Second
		getsPerStep = 4 // per entry
		// The default policy refreshes one-hour credentials 34–40 min in:
		// 40 min − U[0, 6 min). Store times are multiples of step, and so
		// are both bounds, so the gaps between fetches fall in [34, 40] min.
		minGap = 34 * time.Minute
		maxGap = 40 * time.Minute
	)
	tests := []struct {
		name string
		rand func() float64
		// wantFetches is the exact total when the jitter is known:
		// with Rand fixed at 0.5 every gap is 37 min, so each entry is
		// fetched at 0, 37, 74, …, 333 min: 1 + 9 times.
		wantFetches int64
	}{
		{
			name:        "with fixed jitter each entry is refreshed every 37 minutes",
			rand:        func() float64 { return 0.5 },
			wantFetches: entries * (1 + 9),
		},
		{
			name: "with random jitter each entry is refreshed every 34 to 40 minutes",
			rand: rand.New(rand.NewPCG(7, 11)).Float64,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{Rand: tt.rand}, nil)
			for i := range entries {
				h.c.Acquire(testKey(i), testPod(i))
			}
			h.c.WaitIdle() // warm-up: the prefetches

			minLeft := horizon
			for range horizon / step {
				h.step(step)
				now := h.clk.Now()
				for i := range entries {
					for range getsPerStep {
						cr := h.get(testKey(i), testPod(i))
						left := cr.Expiration.Sub(now)
						if left <= DefaultSafetyMargin {
							t.Fatalf("at %v served credentials with %v left", now.Sub(t0), left)
						}
						minLeft = min(minLeft, left)
					}
				}
			}

			gets := float64(horizon / step * entries * getsPerStep)
			if hit, miss, co := h.requests(metrics.CacheHit), h.requests(metrics.CacheMiss), h.requests(metrics.CacheCoalesced); hit != gets || miss != 0 || co != 0 {
				t.Errorf("hits, misses, coalesced = %v, %v, %v; want %v, 0, 0", hit, miss, co, gets)
			}
			// Refreshes happen with at least 60 − 40 = 20 min left, and
			// the old credentials are served until then.
			if minLeft < 20*time.Minute {
				t.Errorf("least lifetime served = %v, want at least 20 min (and never under botocore's 15)", minLeft)
			}
			t.Logf("least lifetime served: %v", minLeft)

			end := h.clk.Now()
			byKey := map[Key][]time.Time{}
			for _, rec := range h.f.recorded() {
				if !rec.background {
					t.Errorf("fetch %d at %v ran on the request path", rec.n, rec.at.Sub(t0))
				}
				byKey[rec.key] = append(byKey[rec.key], rec.at)
			}
			var total int64
			for i := range entries {
				times := byKey[testKey(i)]
				total += int64(len(times))
				if len(times) == 0 || !times[0].Equal(t0) {
					t.Fatalf("entry %d: first fetch at %v, want the prefetch at 0", i, times)
				}
				for j := 1; j < len(times); j++ {
					if gap := times[j].Sub(times[j-1]); gap < minGap || gap > maxGap {
						t.Errorf("entry %d: fetch %d came %v after the previous, want within [%v, %v]", i, j+1, gap, minGap, maxGap)
					}
				}
				// No refresh is missing at the end either: the next one
				// is due less than maxGap after the last.
				if tail := end.Sub(times[len(times)-1]); tail >= maxGap {
					t.Errorf("entry %d: no fetch in the last %v", i, tail)
				}
				// Together these pin the count between 1 + 6h/30min
				// and 1 + 6h/24min.
				if n := len(times); n < 1+int(horizon/maxGap) || n > 1+int(horizon/minGap) {
					t.Errorf("entry %d fetched %d times, want %d to %d", i, n, 1+int(horizon/maxGap), 1+int(horizon/minGap))
				}
			}
			if n := h.f.calls.Load(); n != total {
				t.Errorf("fetches = %d, but %d are accounted for", n, total)
			}
			if tt.wantFetches != 0 && total != tt.wantFetches {
				t.Errorf("fetches = %d, want exactly %d", total, tt.wantFetches)
			}
		})
	}
}
