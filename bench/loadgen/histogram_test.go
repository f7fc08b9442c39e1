package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	t.Run("bucket indices are contiguous and within range", func(t *testing.T) {
		prev := bucketOf(0)
		for v := uint64(1); v < 1<<20; v++ {
			i := bucketOf(v)
			if i != prev && i != prev+1 {
				t.Fatalf("bucketOf(%d) = %d after %d", v, i, prev)
			}
			prev = i
		}
		if i := bucketOf(1<<63 - 1); i != numBuckets-1 {
			t.Errorf("largest value lands in bucket %d, want %d", i, numBuckets-1)
		}
	})
	t.Run("out-of-range durations are clamped, not lost", func(t *testing.T) {
		var h histogram
		h.record(-time.Second)
		h.record(time.Duration(1<<62 + 12345))
		if h.n != 2 || h.counts[0] != 1 || h.counts[numBuckets-1] != 1 || h.max != time.Duration(1<<62+12345) {
			t.Errorf("n %d, first bucket %d, last bucket %d, max %v", h.n, h.counts[0], h.counts[numBuckets-1], h.max)
		}
	})
	t.Run("midpoints are within 0.4 % of every value", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for range 200_000 {
			v := rng.Uint64N(maxValue) >> rng.IntN(maxBits) // spread over all magnitudes
			mid := bucketMid(bucketOf(v))
			if v < linearTop {
				if mid != v {
					t.Fatalf("value %d reported as %d, want exact", v, mid)
				}
				continue
			}
			if err := absDiff(mid, v) / float64(v); err > 1.0/256 {
				t.Fatalf("value %d reported as %d: error %.3f%%", v, mid, err*100)
			}
		}
	})
}

func absDiff(a, b uint64) float64 {
	if a > b {
		return float64(a - b)
	}
	return float64(b - a)
}

func TestHistogramQuantiles(t *testing.T) {
	// 1 µs … 10 000 µs, each once, recorded by two histograms and merged.
	var a, b, h histogram
	for i := 1; i <= 10_000; i++ {
		d := time.Duration(i) * time.Microsecond
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	h.merge(&a)
	h.merge(&b)
	tests := []struct {
		name string
		q    float64
		want time.Duration
	}{
		{"the median is the 5000th value", 0.50, 5000 * time.Microsecond},
		{"p90 is the 9000th value", 0.90, 9000 * time.Microsecond},
		{"p99 is the 9900th value", 0.99, 9900 * time.Microsecond},
		{"q=0 is the smallest value", 0, time.Microsecond},
		{"q=1 is the exact maximum", 1, 10_000 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := h.quantile(tt.q)
			if err := absDiff(uint64(got), uint64(tt.want)) / float64(tt.want); err > 1.0/256 {
				t.Errorf("quantile(%v) = %v, want %v ± 0.4 %%", tt.q, got, tt.want)
			}
		})
	}
	if h.max != 10_000*time.Microsecond || h.n != 10_000 {
		t.Errorf("max %v, n %d after merge", h.max, h.n)
	}
	var empty histogram
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty histogram median %v, want 0", got)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h histogram
	d := 123 * time.Microsecond
	for b.Loop() {
		h.record(d)
		d += 7
	}
}
