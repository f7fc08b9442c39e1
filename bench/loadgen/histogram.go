package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, in the manner of HdrHistogram: values below
// 2^(subBits+1) ns get one bucket each, and every power of two above that is
// split into 2^subBits equal buckets. A bucket [m<<s, (m+1)<<s) with
// m in [128, 256) is reported by its midpoint, so the reported value is off
// by at most 1/(2m) ≤ 1/256 ≈ 0.4 % of the true one; the maximum is kept
// exactly. Recording is an index computation and an increment, with no
// allocation, so a worker can record every request.
const (
	subBits    = 7
	subCount   = 1 << subBits                       // buckets per power of two
	linearTop  = 1 << (subBits + 1)                 // values below this are exact
	maxBits    = 40                                 // 2^40 ns ≈ 18 min: far above any request timeout
	maxValue   = 1<<maxBits - 1                     // larger values are clamped to this
	numBuckets = (maxBits - subBits + 1) * subCount // index of maxValue is numBuckets-1
)

// histogram counts durations in fixed buckets. It is not safe for concurrent
// use: each worker owns one and they are merged after the workers stop.
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	max    time.Duration
}

// bucketOf returns the bucket index of v nanoseconds.
func bucketOf(v uint64) int {
	if v < linearTop {
		return int(v)
	}
	if v > maxValue {
		v = maxValue
	}
	shift := bits.Len64(v) - (subBits + 1)
	return shift*subCount + int(v>>shift)
}

// bucketMid returns the midpoint of bucket i in nanoseconds.
func bucketMid(i int) uint64 {
	if i < linearTop {
		return uint64(i)
	}
	shift := i/subCount - 1
	low := uint64(i-shift*subCount) << shift
	return low + (uint64(1)<<shift)/2
}

// record adds one observation; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

// merge adds all of o's observations to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q in [0, 1]: the smallest recorded
// value v such that at least ⌈q·n⌉ observations are ≤ v, within the bucket
// error above and never above the exact maximum. It is 0 when h is empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketMid(i)), h.max)
		}
	}
	return h.max
}
