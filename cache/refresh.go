package cache

import (
	"context"
	"errors"
	"math"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podcreds/podcreds/failure"
)

// errTooShort answers for credentials that came back, or aged while a caller
// waited, with no more than SafetyMargin left.
var errTooShort = failure.Retriable("CredentialsExpireTooSoon", "the credentials STS returned expire too soon to hand out (a clock skew between the node and STS, or a role session shorter than the refresh margin); retrying", 0, nil)

// backgroundKey marks the context of a fetch nobody is waiting for.
type backgroundKey struct{}

// BackgroundFetch reports whether a Fetch was started by the cache itself (a
// prefetch, refresh or retry) rather than by a request waiting for its
// result. A Fetcher may use it to log or label the two differently.
func BackgroundFetch(ctx context.Context) bool {
	bg, _ := ctx.Value(backgroundKey{}).(bool)
	return bg
}

// startLocked registers a fetch for key and runs it in a new goroutine on
// behalf of pod. parent supplies the fetch's values, not its cancellation:
// it must already be detached from any caller. Cache.mu must be held, and no
// fetch for key may be registered.
func (c *Cache) startLocked(key Key, pod PodRef, parent context.Context, background bool) *call {
	f := &call{done: make(chan struct{})}
	if !c.work.start() {
		f.err = ErrClosed
		close(f.done)
		return f
	}
	c.flights[key] = f
	go func() {
		defer c.work.done()
		c.fetch(parent, key, pod, f, background)
	}()
	return f
}

// fire is a refresh timer's callback. It runs on the clock's goroutine
// (FakeClock: inside Step, holding the clock's lock), so it only starts a
// goroutine and touches no lock but the tracker's.
func (c *Cache) fire(e *entry, gen uint64) {
	if !c.work.start() {
		return
	}
	go func() {
		defer c.work.done()
		c.refresh(e, gen)
	}()
}

// refresh fetches new credentials for e in the background, holding one of
// the refresh slots for the fetch's duration. It does nothing if, by the time
// it has a slot, the timer that started it was stopped or replaced (gen
// moved on), e was dropped, or another fetch for the key is under way (that
// one will reschedule e when it lands).
func (c *Cache) refresh(e *entry, gen uint64) {
	select {
	case c.refreshSlots <- struct{}{}:
	case <-c.stop.Done():
		return
	}
	defer func() { <-c.refreshSlots }()

	c.mu.Lock()
	if c.closed || c.lookup(e.key) != e || e.gen != gen || c.flights[e.key] != nil || len(e.users) == 0 {
		c.mu.Unlock()
		return
	}
	e.timer = nil
	pod := e.newestUserLocked()
	f := &call{done: make(chan struct{})}
	c.flights[e.key] = f
	c.mu.Unlock()

	c.fetch(context.Background(), e.key, pod, f, true)
}

// fetch runs the shared fetch f for key under its own timeout, cancelled
// only by Close, and lands the result.
//
// A failure caused by the pod the fetch was bound to (ErrPodGone: deleted,
// informer lag, force delete) says nothing about the key: that pod is dropped
// from the entry's users and the fetch is tried again at once as another
// user, within the same flight, so waiters (on the request path too) get the
// key's real outcome. Each try drops one user, so the loop ends.
func (c *Cache) fetch(parent context.Context, key Key, pod PodRef, f *call, background bool) {
	ctx, cancel := context.WithTimeout(parent, c.opts.FetchTimeout)
	defer cancel()
	defer context.AfterFunc(c.stop, cancel)()
	if background {
		ctx = context.WithValue(ctx, backgroundKey{}, true)
	}
	tried := map[types.UID]struct{}{}
	for {
		cr, err := c.fetcher.Fetch(ctx, key, pod)
		if err != nil && errors.Is(err, ErrPodGone) {
			tried[pod.UID] = struct{}{}
			if next, ok := c.dropGoneUser(key, pod.UID, tried); ok {
				c.log.Debug("the pod bound to a fetch is gone; fetching as another user",
					append(keyFields(key), zap.String("gone", pod.Namespace+"/"+pod.Name), zap.String("next", next.Namespace+"/"+next.Name))...)
				pod = next
				continue
			}
			// Nobody else to act for: the pods' own deletions will release
			// the entry. Until then, retry with backoff like any transient
			// failure instead of condemning the key.
			err = podGone(err)
		}
		c.land(key, f, cr, err, background)
		return
	}
}

// dropGoneUser removes the pod with uid from key's users (its deletion will
// reach the agent, whose Release then finds it gone) and returns the newest
// remaining user not yet tried, if any.
func (c *Cache) dropGoneUser(key Key, uid types.UID, tried map[types.UID]struct{}) (PodRef, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.lookup(key)
	if e == nil || c.closed {
		return PodRef{}, false
	}
	delete(e.users, uid)
	var best user
	for id, u := range e.users {
		if _, done := tried[id]; !done && u.seq > best.seq {
			best = u
		}
	}
	return best.pod, best.seq > 0
}

// land ends the fetch f: it checks and renders the credentials, applies the
// outcome to key's entry if there still is one (a fetch never creates or
// resurrects an entry), and only then publishes the result to f's waiters.
// Removing f and storing the result in one critical section leaves no moment
// at which a Get sees neither, so no second fetch can start in between.
func (c *Cache) land(key Key, f *call, cr *Credentials, err error, background bool) {
	now := c.clock.Now()
	switch {
	case err != nil:
	case cr == nil:
		err = failure.From(errors.New("fetcher returned no credentials and no error"))
	case cr.Expiration.Sub(now) <= c.opts.SafetyMargin:
		err = errTooShort
	default:
		cr = readyToStore(cr, now)
	}
	if err != nil {
		cr = nil
	}

	c.mu.Lock()
	if c.flights[key] == f {
		delete(c.flights, key)
	}
	if e := c.lookup(key); e != nil && !c.closed {
		c.applyLocked(e, cr, err, now, background)
	}
	f.creds, f.err = cr, err
	c.mu.Unlock()
	close(f.done)
}

// applyLocked records a fetch's outcome in e and schedules what comes next.
// Cache.mu must be held.
func (c *Cache) applyLocked(e *entry, cr *Credentials, err error, now time.Time, background bool) {
	log := c.log.With(keyFields(e.key)...)
	e.needsUser = err != nil && errors.Is(err, ErrPodGone)
	switch {
	case err == nil:
		e.creds.Store(cr)
		e.failures = 0
		e.finalErr, e.retryErr = nil, nil
		d := c.refreshDelayLocked(cr.Expiration.Sub(now))
		c.scheduleLocked(e, d)
		e.refreshAt.Store(now.Add(d).UnixNano())
		log.Debug("credentials stored", zap.Time("expiration", cr.Expiration), zap.Duration("refreshIn", d))
	case failure.IsRetriable(err):
		// Keep whatever credentials e has: Get serves them while they
		// last.
		e.failures++
		d := c.backoffLocked(e.failures)
		c.scheduleLocked(e, d)
		e.retryErr, e.retryAt = err, now.Add(d)
		// Background fetches (prefetches, refreshes, retries) count as
		// refresh failures; a failed request-path fetch is the caller's
		// error and is counted where it is answered.
		if background {
			c.m.RefreshFailures.Inc()
		}
		log.Warn("fetching credentials failed, will retry",
			zap.Int("attempt", e.failures), zap.Duration("retryIn", d), zap.Error(err))
	default:
		// A final failure (access revoked, role gone) must not be
		// papered over with the old credentials.
		e.creds.Store(nil)
		e.failures = 0
		e.finalErr = err
		e.finalAt = now
		e.retryErr = nil
		c.stopTimerLocked(e)
		if background {
			c.m.RefreshFailures.Inc()
		}
		log.Warn("fetching credentials failed for good, credentials dropped", zap.Error(err))
	}
}

// refreshDelayLocked returns how long after storing credentials with the
// given lifetime to refresh them; see the package documentation. It draws
// from Options.Rand, hence the lock.
func (c *Cache) refreshDelayLocked(life time.Duration) time.Duration {
	d := time.Duration(float64(life) * c.opts.RefreshFraction)
	if latest := life - c.opts.RefreshBefore; d > latest {
		d = latest
	}
	d -= time.Duration(c.opts.Rand() * c.opts.RefreshJitter * float64(life))
	return max(d, life/4)
}

// backoffLocked returns the delay before retry number attempt (from 1):
// equal jitter over b = min(InitialBackoff·2^(attempt−1), MaxBackoff), i.e. a
// uniform delay in [b/2, b). Half the delay is fixed so the retries of one
// entry really back off; the other half spreads entries that failed together.
func (c *Cache) backoffLocked(attempt int) time.Duration {
	b := c.opts.InitialBackoff
	for i := 1; i < attempt && b < c.opts.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, c.opts.MaxBackoff)
	return b/2 + time.Duration(c.opts.Rand()*float64(b/2))
}

// scheduleLocked replaces e's timer with one that refreshes e after d.
// Cache.mu must be held.
func (c *Cache) scheduleLocked(e *entry, d time.Duration) {
	c.stopTimerLocked(e)
	gen := e.gen
	e.timer = c.clock.AfterFunc(d, func() { c.fire(e, gen) })
}

// refreshOverdue starts e's refresh now: a hit found the wall clock past its
// refresh time, so the timer (on the monotonic clock, which a suspend stops)
// is late. Only the first caller to see it does anything.
func (c *Cache) refreshOverdue(e *entry) {
	at := e.refreshAt.Load()
	if at == math.MaxInt64 || !e.refreshAt.CompareAndSwap(at, math.MaxInt64) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.lookup(e.key) != e || c.flights[e.key] != nil {
		return
	}
	c.stopTimerLocked(e)
	c.fire(e, e.gen)
}

// stopTimerLocked stops e's timer and invalidates any callback of it that is
// already running. Cache.mu must be held.
func (c *Cache) stopTimerLocked(e *entry) {
	e.refreshAt.Store(math.MaxInt64)
	e.gen++
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

// podGone answers when every pod an entry could act for is gone: the pods'
// own deletions release the entry, and a pod still alive retries shortly.
func podGone(err error) error {
	return failure.Retriable("PodGone", "the pod this request was bound to is gone (deleted while its credentials were fetched); retry shortly", 0, err)
}
