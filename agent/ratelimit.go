package agent

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/podcreds/podcreds/failure"
)

// sourceLimiter gives every source address its own token bucket, so one pod
// in a tight loop cannot starve the others on its node. The defaults are far
// above what any SDK does (one request per credential refresh, a handful
// at start), so only a runaway client ever meets them.
type sourceLimiter struct {
	limit rate.Limit
	burst int

	// buckets maps netip.Addr to *bucket. sync.Map suits this: each key is
	// written once and then read on every request from that address.
	buckets sync.Map
	sweep   sync.Mutex // one sweeper at a time
	next    time.Time  // guarded by sweep
}

type bucket struct {
	*rate.Limiter
	lastUsed atomic.Int64 // unix nanoseconds of the latest request
}

// newSourceLimiter allows each address perSecond requests on average with
// bursts of burst. perSecond <= 0 disables limiting (nil limiter).
func newSourceLimiter(perSecond float64, burst int) *sourceLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &sourceLimiter{limit: rate.Limit(perSecond), burst: max(burst, 1)}
}

// allow takes a token for ip, or returns the 429 to answer.
func (l *sourceLimiter) allow(ip netip.Addr, now time.Time) error {
	if l == nil {
		return nil
	}
	v, ok := l.buckets.Load(ip)
	if !ok {
		nb := &bucket{Limiter: rate.NewLimiter(l.limit, l.burst)}
		nb.lastUsed.Store(now.UnixNano()) // before any sweep can see it
		v, _ = l.buckets.LoadOrStore(ip, nb)
		l.maybeSweep(now)
	}
	b := v.(*bucket)
	b.lastUsed.Store(now.UnixNano())
	if b.AllowN(now, 1) {
		return nil
	}
	wait := time.Duration(float64(time.Second) / float64(l.limit))
	return failure.TooManyRequests(wait)
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
	full := time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second)) + time.Second
	l.buckets.Range(func(k, v any) bool {
		if now.UnixNano()-v.(*bucket).lastUsed.Load() > int64(full) {
			l.buckets.Delete(k)
		}
		return true
	})
}
