package agent

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podcreds/podcreds/failure"
)

// sourceLimiter gives every source address its own token bucket, so one pod
// in a tight loop cannot starve the others on its node. The defaults are far
// above what any SDK does (one request per credential refresh, a handful
// at start), so only a runaway client ever meets them.
//
// Each bucket is one word, the generic cell rate algorithm's theoretical
// arrival time: the instant the bucket would be full again if nothing more
// were asked of it. A request is one compare-and-swap on that word — no lock,
// no floating point — since it runs on every request of every pod.
type sourceLimiter struct {
	interval  int64 // nanoseconds per token (1/rate)
	tolerance int64 // nanoseconds of credit a full bucket holds: burst tokens

	// buckets maps netip.Addr to *bucket. sync.Map suits this: each key is
	// written once and then read on every request from that address.
	buckets sync.Map
	sweep   sync.Mutex // one sweeper at a time
	next    time.Time  // guarded by sweep
}

type bucket struct {
	// tat is the theoretical arrival time in unix nanoseconds: the bucket
	// is full at or after it, and each request moves it one interval on.
	tat atomic.Int64
}

// newSourceLimiter allows each address perSecond requests on average with
// bursts of burst. perSecond <= 0 disables limiting (nil limiter).
func newSourceLimiter(perSecond float64, burst int) *sourceLimiter {
	if perSecond <= 0 {
		return nil
	}
	interval := max(int64(float64(time.Second)/perSecond), 1)
	return &sourceLimiter{
		interval:  interval,
		tolerance: satMul(interval, int64(max(burst, 1))),
	}
}

// satMul is a*b for positive a and b, saturating instead of overflowing.
func satMul(a, b int64) int64 {
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// allow takes a token for ip, or returns the 429 to answer.
func (l *sourceLimiter) allow(ip netip.Addr, now time.Time) error {
	return l.allowFrom(nil, ip, now)
}

// allowFrom is allow for a request on a connection that keeps ip's bucket
// in slot (nil: none), so its later requests skip the map. A bucket the
// sweep dropped is marked swept and refuses every charge: the connection
// then takes the address's current bucket, so an address never has two.
func (l *sourceLimiter) allowFrom(slot *atomic.Pointer[bucket], ip netip.Addr, now time.Time) error {
	if l == nil {
		return nil
	}
	t := now.UnixNano()
	var b *bucket
	if slot != nil {
		b = slot.Load()
	}
	for {
		if b == nil {
			b = l.bucketOf(ip, now)
			if slot != nil {
				slot.Store(b)
			}
		}
		tat := b.tat.Load()
		if tat == swept {
			b = nil
			continue
		}
		next := max(tat, t) + l.interval
		if next-t > l.tolerance {
			return failure.TooManyRequests(time.Duration(l.interval)) // a token's time
		}
		if b.tat.CompareAndSwap(tat, next) {
			return nil
		}
	}
}

// swept is the arrival time of a bucket the sweep has dropped.
const swept = math.MinInt64

// bucketOf returns ip's bucket, made full at now if ip has none.
func (l *sourceLimiter) bucketOf(ip netip.Addr, now time.Time) *bucket {
	for {
		v, ok := l.buckets.Load(ip)
		if !ok {
			nb := &bucket{}
			nb.tat.Store(now.UnixNano()) // full now, and not idle to a sweep that runs next
			v, _ = l.buckets.LoadOrStore(ip, nb)
			l.maybeSweep(now)
		}
		b := v.(*bucket)
		if b.tat.Load() != swept {
			return b
		}
		l.buckets.CompareAndDelete(ip, b) // the sweep is deleting it
	}
}

// maybeSweep drops buckets idle long enough to have refilled completely, at
// most once a minute, so addresses of pods long gone do not accumulate.
func (l *sourceLimiter) maybeSweep(now time.Time) {
	if !l.sweep.TryLock() {
		return
	}
	defer l.sweep.Unlock()
	if now.Before(l.next) {
		return
	}
	l.next = now.Add(time.Minute)
	l.buckets.Range(func(k, v any) bool {
		// Full again for a second: forgetting it changes nothing. It is
		// marked first, so a connection that keeps it takes the new one.
		b := v.(*bucket)
		if tat := b.tat.Load(); tat != swept && now.UnixNano()-tat > int64(time.Second) && b.tat.CompareAndSwap(tat, swept) {
			l.buckets.CompareAndDelete(k, b)
		}
		return true
	})
}
