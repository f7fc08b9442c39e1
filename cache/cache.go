package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

// errPending answers a request that waited MaxWait for a fetch.
var errPending = failure.Retriable("CredentialsPending", "credentials are being fetched; retry shortly", time.Second, nil)

// ErrClosed is returned by Get when it would have to fetch after Close.
var ErrClosed = failure.Retriable("ShuttingDown", "the credential agent on this node is shutting down (SIGTERM); its replacement answers in a moment", 0, nil)

// Cache holds credentials per Key and refreshes them in the background. Its
// methods are safe for concurrent use.
//
// Locking: mu serialises every change: to the entries map, flights, closed
// and every entry field. Two things are read without it, which is what makes
// a hit lock-free: the entries map, which is copied on write (a published map
// is never modified, and entries come and go only with pods), and
// entry.creds. The cache calls into the clock (Now, AfterFunc, Timer.Stop)
// while holding mu; clock callbacks therefore take no lock but the tracker's
// (see tracker).
type Cache struct {
	fetcher Fetcher
	opts    Options
	clock   clock.WithDelayedExecution
	log     *zap.Logger
	m       *metrics.Metrics
	// Pre-resolved children of m.CacheRequests, so the hot path does no
	// label lookup.
	hits, misses, coalesced prometheus.Counter

	work *tracker
	// refreshSlots is a semaphore bounding background refreshes.
	refreshSlots chan struct{}
	// stop is cancelled by Close, and with it every fetch in flight.
	stop     context.Context
	stopFunc context.CancelFunc

	// waitHook, if set, is called by a Get that is about to wait for a
	// fetch. Tests set it before any Get to know when callers have joined.
	waitHook func()

	// entries points to the current map of entries; see Locking above.
	entries atomic.Pointer[map[Key]*entry]
	// realClock is set when the cache runs on the real clock (see GetAt).
	realClock bool

	mu      sync.Mutex
	flights map[Key]*call
	closed  bool
}

// entry is the state of one Key. creds is the only field read without
// Cache.mu; all others are guarded by it.
type entry struct {
	key Key
	// creds is the newest successfully fetched credentials, or nil. It may
	// hold credentials that are no longer servable; Get checks.
	creds atomic.Pointer[Credentials]
	// refreshAt is when (wall clock, Unix nanoseconds) the scheduled
	// refresh is due, or math.MaxInt64 if none is. Read without the lock
	// by Get: the refresh timer runs on the monotonic clock, which stops
	// during a suspend, so a hit past refreshAt starts the refresh itself.
	refreshAt atomic.Int64
	// dropped is set once the entry has left the entries map: a Ref that
	// still points at it must look its key up again.
	dropped atomic.Bool

	users   map[types.UID]user
	userSeq uint64
	// timer is the pending refresh or retry, if any. gen is bumped whenever
	// the timer is replaced or stopped, and a firing timer that carries an
	// older gen does nothing: Stop cannot recall a callback already running.
	timer clock.Timer
	gen   uint64
	// failures counts consecutive retriable failures (the backoff exponent).
	failures int
	// finalErr is the last final failure, answered until finalAt+FinalErrorTTL.
	finalErr error
	finalAt  time.Time
	// retryErr is the last retriable failure, answered until retryAt (the
	// next scheduled attempt) to requests that find no servable
	// credentials: during an outage the backoff paces STS calls, not the
	// clients' retry loops.
	retryErr error
	retryAt  time.Time
	// needsUser is set when the last fetch failed because every user it
	// could act for was gone (ErrPodGone): the next pod to arrive fetches at
	// once instead of waiting out the backoff.
	needsUser bool
}

// user is one pod using an entry; seq orders acquisitions.
type user struct {
	pod PodRef
	seq uint64
}

// call is one fetch in flight; everyone who wants the key's credentials
// meanwhile waits on it. creds and err are written once, before done is
// closed, and never after: readers share them.
type call struct {
	done  chan struct{}
	creds *Credentials
	err   error
}

// New returns a cache that obtains credentials from fetcher. Call Close when
// done with it.
func New(fetcher Fetcher, opts Options) *Cache {
	opts = opts.withDefaults()
	stop, stopFunc := context.WithCancel(context.Background())
	c := &Cache{
		fetcher:      fetcher,
		opts:         opts,
		clock:        opts.Clock,
		log:          opts.Logger.Named("cache"),
		m:            opts.Metrics,
		hits:         opts.Metrics.CacheRequests.WithLabelValues(metrics.CacheHit),
		misses:       opts.Metrics.CacheRequests.WithLabelValues(metrics.CacheMiss),
		coalesced:    opts.Metrics.CacheRequests.WithLabelValues(metrics.CacheCoalesced),
		work:         newTracker(),
		refreshSlots: make(chan struct{}, opts.MaxConcurrentRefreshes),
		stop:         stop,
		stopFunc:     stopFunc,
		flights:      make(map[Key]*call),
	}
	_, c.realClock = opts.Clock.(clock.RealClock)
	c.entries.Store(&map[Key]*entry{})
	c.m.CacheEntries.Set(0)
	return c
}

// lookup returns key's entry or nil. It takes no lock.
func (c *Cache) lookup(key Key) *entry {
	return (*c.entries.Load())[key]
}

// setEntryLocked publishes a copy of the entries map in which key maps to e,
// or is absent if e is nil. Copying costs O(entries) but happens only when
// the first pod of a key arrives or the last one leaves. mu must be held.
func (c *Cache) setEntryLocked(key Key, e *entry) {
	old := *c.entries.Load()
	if prev := old[key]; prev != nil && prev != e {
		prev.dropped.Store(true) // a Ref to it looks the key up again
	}
	m := make(map[Key]*entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if e != nil {
		m[key] = e
	} else {
		delete(m, key)
	}
	c.entries.Store(&m)
	c.m.CacheEntries.Set(float64(len(m)))
}

// Get returns servable credentials for key on behalf of pod: from memory if
// the entry holds credentials with more than SafetyMargin left, otherwise
// from a fetch shared with every other caller waiting for the same key.
//
// If ctx ends first, Get returns ctx's error and the fetch carries on for
// the others (and, if key has an entry, for the cache). Get neither creates
// an entry nor registers pod as a user: a fetch for a key nobody acquired is
// still shared, but its result is handed out and not kept.
//
// The returned credentials are shared and must not be modified.
func (c *Cache) Get(ctx context.Context, key Key, pod PodRef) (*Credentials, error) {
	return c.GetAt(ctx, key, pod, c.clock.Now())
}

// GetAt is Get for a request that has read the real clock already: now is
// that reading, used in place of the cache's own when the cache runs on the
// real clock (a cache on another clock, in tests, reads its own). The hot
// path so reads the time once per request.
func (c *Cache) GetAt(ctx context.Context, key Key, pod PodRef, now time.Time) (*Credentials, error) {
	return c.getAt(ctx, c.lookup(key), key, pod, now)
}

// Ref is a key and its entry as Cache.Ref found it, for a caller that asks
// for the same key on every request (the agent keeps one per pod): GetRefAt
// reads the entry through it instead of hashing the key, which has eight
// strings. A Ref outlives its entry harmlessly: once the entry is dropped,
// GetRefAt looks the key up as GetAt does.
type Ref struct {
	key Key
	e   *entry
}

// Ref returns key with its entry as it is now (none if key has no entry).
func (c *Cache) Ref(key Key) Ref { return Ref{key, c.lookup(key)} }

// Key is the key ref was taken for.
func (ref Ref) Key() Key { return ref.key }

// GetRefAt is GetAt for ref's key, through ref's entry while it is held.
func (c *Cache) GetRefAt(ctx context.Context, ref Ref, pod PodRef, now time.Time) (*Credentials, error) {
	e := ref.e
	if e == nil || e.dropped.Load() {
		e = c.lookup(ref.key)
	}
	return c.getAt(ctx, e, ref.key, pod, now)
}

// getAt is GetAt once key's entry e (nil: none) has been looked up.
func (c *Cache) getAt(ctx context.Context, e *entry, key Key, pod PodRef, now time.Time) (*Credentials, error) {
	if !c.realClock {
		now = c.clock.Now()
	}
	if e != nil {
		if cr := e.creds.Load(); cr != nil {
			if c.serve(cr, now) {
				if now.UnixNano() >= e.refreshAt.Load() {
					c.refreshOverdue(e)
				}
				c.hits.Inc()
				return cr, nil
			}
		}
	}
	return c.slowGet(ctx, key, pod)
}

// serve reports whether the stored credentials cr may be served at now, and
// if so records their remaining lifetime. now is a wall-clock reading and
// expiresAt has no monotonic one, so the comparison is by wall clock: after
// a suspend, credentials whose Expiration has passed are never served.
func (c *Cache) serve(cr *Credentials, now time.Time) bool {
	left := cr.expiresAt.Sub(now)
	if left <= c.opts.SafetyMargin {
		return false
	}
	// One float division; Duration.Seconds' integer split costs more, and
	// this runs on every hit.
	c.m.ServedRemaining.Observe(float64(left) / float64(time.Second))
	return true
}

// slowGet is Get when the lock-free look found nothing servable. It looks
// again under the lock (a fetch may have just stored), then joins the key's
// fetch or starts one, and waits for it or for ctx.
func (c *Cache) slowGet(ctx context.Context, key Key, pod PodRef) (*Credentials, error) {
	c.mu.Lock()
	if e := c.lookup(key); e != nil {
		if cr := e.creds.Load(); cr != nil && c.serve(cr, c.clock.Now()) {
			c.mu.Unlock()
			c.hits.Inc()
			return cr, nil
		}
		if e.finalErr != nil && c.clock.Since(e.finalAt) < c.opts.FinalErrorTTL {
			err := e.finalErr
			c.mu.Unlock()
			c.hits.Inc() // answered from memory, without waiting
			return nil, err
		}
		if e.retryErr != nil && c.clock.Now().Before(e.retryAt) {
			err := e.retryErr
			c.mu.Unlock()
			c.hits.Inc() // answered from memory; the retry is already scheduled
			return nil, err
		}
	}
	f, joined := c.flights[key]
	if !joined {
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		f = c.startLocked(key, pod, context.WithoutCancel(ctx), false)
	}
	c.mu.Unlock()
	if joined {
		c.coalesced.Inc()
	} else {
		c.misses.Inc()
	}
	if c.waitHook != nil {
		c.waitHook()
	}

	var bound <-chan time.Time
	if c.opts.MaxWait > 0 {
		t := time.NewTimer(c.opts.MaxWait)
		defer t.Stop()
		bound = t.C
	}
	select {
	case <-bound:
		// The fetch goes on for whoever asks next; this caller's SDK is
		// about to give up, so tell it to come back instead.
		return nil, errPending
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		// Fresh credentials have far more than SafetyMargin left; this
		// only fails if the clock jumped while we waited.
		if !c.serve(f.creds, c.clock.Now()) {
			return nil, errTooShort
		}
		return f.creds, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Peek returns the credentials key's entry holds, servable or not, or nil.
// It counts nothing; it is meant for tests and diagnostics.
func (c *Cache) Peek(key Key) *Credentials {
	if e := c.lookup(key); e != nil {
		return e.creds.Load()
	}
	return nil
}

// Settled reports whether key's first fetch has ended: the entry holds
// credentials or has failed (retriable or final). A key without an entry
// has nothing to wait for and is settled. A starting agent waits for every
// pod's key to settle before it serves (warm-up).
func (c *Cache) Settled(key Key) bool {
	e := c.lookup(key)
	if e == nil || e.creds.Load() != nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.failures > 0 || e.finalErr != nil
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	return len(*c.entries.Load())
}

// WaitIdle blocks until no fetch or refresh is running. Timers that have not
// fired do not count. It is meant for tests that drive a fake clock: step the
// clock, then WaitIdle before looking at the result.
func (c *Cache) WaitIdle() { c.work.wait() }

// Close stops every refresh timer, cancels fetches in flight and waits for
// the cache's goroutines to end. Afterwards Acquire does nothing and Get
// still serves what is held but answers ErrClosed instead of fetching.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	for _, e := range *c.entries.Load() {
		c.stopTimerLocked(e)
	}
	c.mu.Unlock()
	// Timers that fired before being stopped may still try to start a
	// refresh; after this they cannot.
	c.work.close()
	c.stopFunc()
	c.work.wait()
}
