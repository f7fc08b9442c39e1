package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/failure"
)

func TestRefreshDelay(t *testing.T) {
	tests := []struct {
		name     string
		life     time.Duration
		opts     Options
		min, max time.Duration // over Rand in [0, 1)
	}{
		{name: "one-hour credentials are refreshed 34 to 40 minutes in", life: time.Hour, min: 34 * time.Minute, max: 40 * time.Minute},
		{name: "at half the lifetime on request", life: time.Hour, opts: Options{RefreshFraction: 0.5}, min: 24 * time.Minute, max: 30 * time.Minute},
		{name: "twelve-hour credentials are refreshed between 6.8 and 8 hours in", life: 12 * time.Hour, min: 408 * time.Minute, max: 8 * time.Hour},
		{name: "thirty-minute credentials are refreshed before 20 minutes are left", life: 30 * time.Minute, min: 450 * time.Second, max: 10 * time.Minute},
		{name: "fifteen-minute credentials are refreshed no sooner than a quarter in", life: 15 * time.Minute, min: 225 * time.Second, max: 225 * time.Second},
		{name: "a late fraction is capped by RefreshBefore", life: time.Hour, opts: Options{RefreshFraction: 0.9}, min: 34 * time.Minute, max: 40 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []float64{0, 0.5, 0.999999} {
				opts := tt.opts
				opts.Rand = func() float64 { return r }
				c := New(newFakeFetcher(nil), opts)
				c.mu.Lock()
				d := c.refreshDelayLocked(tt.life)
				c.mu.Unlock()
				c.Close()
				if d < tt.min-time.Second || d > tt.max {
					t.Errorf("Rand %v: refresh after %v, want within [%v, %v]", r, d, tt.min, tt.max)
				}
			}
		})
	}
}

func TestBackoffSchedule(t *testing.T) {
	// Equal jitter: attempt n waits in [b/2, b), b = min(1 s·2^(n−1), 2 min).
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 120, 120, 120}
	for _, r := range []float64{0, 0.5, 0.999999} {
		c := New(newFakeFetcher(nil), Options{Rand: func() float64 { return r }})
		for i, b := range want {
			b *= time.Second
			c.mu.Lock()
			d := c.backoffLocked(i + 1)
			c.mu.Unlock()
			if d < b/2 || d >= b {
				t.Errorf("Rand %v, attempt %d: %v, want within [%v, %v)", r, i+1, d, b/2, b)
			}
		}
		c.Close()
	}
}

func TestRetriableRefreshFailure(t *testing.T) {
	const margin = DefaultSafetyMargin
	throttled := failure.Retriable("Throttling", "rate exceeded", 0, nil)

	t.Run("old credentials are served while retries back off, and fresh ones follow recovery", func(t *testing.T) {
		const failures = 8 // refresh attempts 2..9 fail, the 10th succeeds
		const step = 100 * time.Millisecond
		h := newHarness(t, Options{Rand: rand.New(rand.NewPCG(1, 2)).Float64}, func(f *fakeFetcher) {
			f.fail = func(n int64) error {
				if n >= 2 && n <= 1+failures {
					return throttled
				}
				return nil
			}
		})
		key := testKey(1)
		h.c.Acquire(key, testPod(1))
		h.c.WaitIdle()
		h.step(34*time.Minute - step) // the earliest possible refresh is at 34 min
		for h.f.calls.Load() < 2+failures {
			h.step(step)
			if cr := h.get(key, testPod(1)); cr.AccessKeyID != "AKID0001" && h.f.calls.Load() <= 1+failures {
				t.Fatalf("served %s while refreshes fail, want the old AKID0001", cr.AccessKeyID)
			}
		}
		if cr := h.get(key, testPod(1)); cr.AccessKeyID != "AKID0010" {
			t.Fatalf("after recovery served %s, want the fresh AKID0010", cr.AccessKeyID)
		}

		// The last delay checked below is the recovery: the fetcher
		// recovered right after attempt 9 failed, and fresh credentials
		// came within one backoff step of it.
		recs := h.f.recorded()
		ratios := map[float64]bool{}
		for i := 2; i < len(recs); i++ { // recs[i] is retry number i−1
			attempt := i - 1
			b := min(time.Second<<(attempt-1), DefaultMaxBackoff)
			got := recs[i].at.Sub(recs[i-1].at)
			// Timers fire on the first step at or after their time.
			if got < b/2 || got >= b+step {
				t.Errorf("retry %d came %v after the previous attempt, want within [%v, %v)", attempt, got, b/2, b)
			}
			// Below the cap each window starts where the previous one
			// ended, so the delays grow.
			if i > 2 && b < DefaultMaxBackoff && got < recs[i-1].at.Sub(recs[i-2].at)-step {
				t.Errorf("retry %d came sooner (%v) than the one before", attempt, got)
			}
			ratios[float64(got.Truncate(step))/float64(b)] = true
			if !recs[i].background {
				t.Errorf("attempt %d ran on the request path", i+1)
			}
		}
		if len(ratios) < 3 {
			t.Errorf("retry delays relative to their backoff: %v; want them jittered", ratios)
		}
		if got := testutil.ToFloat64(h.m.RefreshFailures); got != failures {
			t.Errorf("refresh failures = %v, want %d", got, failures)
		}
	})

	t.Run("when every retry fails until expiry, Get answers 503 and never serves expired credentials", func(t *testing.T) {
		h := newHarness(t, Options{}, func(f *fakeFetcher) {
			f.fail = func(n int64) error {
				if n >= 2 {
					return throttled
				}
				return nil
			}
		})
		key := testKey(1)
		h.c.Acquire(key, testPod(1))
		h.c.WaitIdle()
		expiry := h.c.Peek(key).Expiration
		var served, refused int
		for h.clk.Now().Before(expiry.Add(10 * time.Minute)) {
			h.step(10 * time.Second)
			now := h.clk.Now()
			cr, err := h.c.Get(context.Background(), key, testPod(1))
			switch {
			case err == nil:
				served++
				if left := cr.Expiration.Sub(now); left <= margin {
					t.Fatalf("at %v served credentials with %v left", now.Sub(t0), left)
				}
			case failure.From(err).Status == http.StatusServiceUnavailable:
				refused++
				if left := expiry.Sub(now); left > margin {
					t.Fatalf("at %v refused although the credentials have %v left: %v", now.Sub(t0), left, err)
				}
			default:
				t.Fatalf("Get = %v, want credentials or a 503", err)
			}
		}
		if served == 0 || refused == 0 {
			t.Errorf("served %d times and refused %d, want both", served, refused)
		}
	})
}

func TestFinalRefreshFailure(t *testing.T) {
	denied := failure.Final(http.StatusForbidden, "AccessDenied", "not authorized to assume the role", nil)
	h := newHarness(t, Options{}, func(f *fakeFetcher) {
		f.fail = func(n int64) error {
			if n == 2 || n == 3 {
				return denied
			}
			return nil
		}
	})
	key := testKey(1)
	h.c.Acquire(key, testPod(1))
	h.c.WaitIdle()
	h.step(refreshAt) // the refresh, which is denied

	if cr := h.c.Peek(key); cr != nil {
		t.Fatalf("after a final failure the cache holds %s, want nothing", cr.AccessKeyID)
	}
	if _, err := h.c.Get(context.Background(), key, testPod(1)); !errors.Is(err, denied) {
		t.Fatalf("Get = %v, want the final error", err)
	}
	if n := h.f.calls.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2: the final error is answered from memory", n)
	}
	if w := h.clk.Waiters(); w != 0 {
		t.Errorf("timers pending after a final failure = %d, want 0", w)
	}
	if got := testutil.ToFloat64(h.m.RefreshFailures); got != 1 {
		t.Errorf("refresh failures = %v, want 1", got)
	}

	h.step(DefaultFinalErrorTTL) // the final error is forgotten; a request tries again
	if _, err := h.c.Get(context.Background(), key, testPod(1)); !errors.Is(err, denied) {
		t.Fatalf("Get = %v, want the final error again", err)
	}
	h.step(DefaultFinalErrorTTL)
	if cr := h.get(key, testPod(1)); cr.AccessKeyID != "AKID0004" {
		t.Fatalf("Get after access was restored = %s, want AKID0004", cr.AccessKeyID)
	}
	if w := h.clk.Waiters(); w != 1 {
		t.Errorf("timers pending after recovery = %d, want 1 (the refresh)", w)
	}
}

// A shared entry's fetch is bound to one of its users. When that pod is gone
// (force delete, informer lag) the TokenRequest fails for that pod alone; it
// once dropped the credentials of every pod of the ServiceAccount.
func TestGonePodOfOneUserDoesNotFailItsSiblings(t *testing.T) {
	goneErr := func(p PodRef) error {
		return failure.Final(http.StatusNotFound, "PodNotFound", "pod "+p.Name+" no longer exists", fmt.Errorf("%w: not found", ErrPodGone))
	}
	key := testKey(1)

	t.Run("a refresh bound to a gone pod retries at once as another user", func(t *testing.T) {
		gone := testPod(3) // the newest user, the one a refresh binds to
		h := newHarness(t, Options{}, func(f *fakeFetcher) {
			f.fail = func(n int64) error {
				if recs := f.recorded(); recs[len(recs)-1].pod == gone {
					return goneErr(gone)
				}
				return nil
			}
		})
		for i := 1; i <= 2; i++ {
			h.c.Acquire(key, testPod(i))
		}
		h.c.WaitIdle()
		h.c.Acquire(key, gone)
		h.step(refreshAt)

		recs := h.f.recorded()
		if len(recs) != 3 || recs[1].pod != gone || recs[2].pod != testPod(2) {
			t.Fatalf("fetches as %v; want the prefetch, the refresh as the gone pod-3, then at once as pod-2", podNames(recs))
		}
		if recs[2].at != recs[1].at {
			t.Errorf("retry as pod-2 at %v, want at once (%v)", recs[2].at, recs[1].at)
		}
		if cr := h.get(key, testPod(1)); cr.AccessKeyID != "AKID0003" {
			t.Errorf("served %s to a sibling, want the credentials fetched as pod-2", cr.AccessKeyID)
		}
		if got := testutil.ToFloat64(h.m.RefreshFailures); got != 0 {
			t.Errorf("refresh failures = %v, want 0: the key did not fail", got)
		}
	})

	t.Run("a request-path fetch bound to a gone pod is answered with another user's", func(t *testing.T) {
		gone := testPod(9)
		h := newHarness(t, Options{}, func(f *fakeFetcher) {
			f.fail = func(n int64) error {
				if n == 1 { // leave the entry empty, with nothing scheduled
					return failure.Final(http.StatusForbidden, "AccessDenied", "not yet", nil)
				}
				if recs := f.recorded(); recs[len(recs)-1].pod == gone {
					return goneErr(gone)
				}
				return nil
			}
		})
		h.c.Acquire(key, testPod(1))
		h.c.WaitIdle()
		h.step(DefaultFinalErrorTTL) // the final error is forgotten; nothing is held
		cr, err := h.c.Get(context.Background(), key, gone)
		if err != nil {
			t.Fatalf("Get for the gone pod = %v; want the key's credentials fetched as pod-1", err)
		}
		if recs := h.f.recorded(); recs[len(recs)-1].pod != testPod(1) || cr.AccessKeyID == "" {
			t.Fatalf("fetches as %v, want the last as pod-1", podNames(recs))
		}
		if cr := h.get(key, testPod(1)); cr == nil {
			t.Fatal("sibling not served")
		}
	})

	t.Run("a gone pod that was the only user is never recorded as the entry's final error", func(t *testing.T) {
		gone := testPod(1)
		h := newHarness(t, Options{}, func(f *fakeFetcher) {
			f.fail = func(n int64) error {
				if recs := f.recorded(); recs[len(recs)-1].pod == gone {
					return goneErr(gone)
				}
				return nil
			}
		})
		h.c.Acquire(key, gone)
		h.c.WaitIdle()
		// A new pod of the ServiceAccount arrives and asks at once.
		h.c.Acquire(key, testPod(2))
		h.c.WaitIdle()
		if cr := h.get(key, testPod(2)); cr == nil {
			t.Fatal("the new pod was not served")
		}
	})
}

func podNames(recs []fetchRecord) []string {
	var names []string
	for _, r := range recs {
		names = append(names, r.pod.Name)
	}
	return names
}

// suspendClock is a fake clock for a host that can be suspended. Its timers
// and Since run on the monotonic clock (the embedded FakeClock, moved by
// Step), which stops while suspended, as time.Since does for a time read from
// time.Now; Now is the wall clock, which Suspend moves on alone. Times given
// to Since must have been read before any Suspend, as in these tests.
type suspendClock struct {
	*testingclock.FakeClock
	mu    sync.Mutex
	slept time.Duration
}

func (c *suspendClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.FakeClock.Now().Add(c.slept)
}

func (c *suspendClock) Since(t time.Time) time.Duration { return c.FakeClock.Now().Sub(t) }

// Suspend moves the wall clock by d and nothing else, as a host that sleeps.
func (c *suspendClock) Suspend(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept += d
}

// Expiry and refresh were judged on the monotonic clock alone, which does not
// advance while a host or VM is suspended: after resume the cache served
// credentials whose Expiration had passed and kept its stale refresh timer.
func TestExpiryAndRefreshFollowTheWallClockAcrossASuspend(t *testing.T) {
	newSuspended := func(t *testing.T) (*Cache, *suspendClock, *fakeFetcher) {
		clk := &suspendClock{FakeClock: testingclock.NewFakeClock(t0)}
		f := newFakeFetcher(nil)
		f.now = clk.Now
		c := New(f, Options{Clock: clk, Logger: zaptest.NewLogger(t), Rand: func() float64 { return 0.5 }})
		t.Cleanup(c.Close)
		return c, clk, f
	}
	key, pod := testKey(1), testPod(1)

	t.Run("credentials past their wall-clock expiry are never served", func(t *testing.T) {
		c, clk, f := newSuspended(t)
		f.fail = func(n int64) error {
			if n > 1 {
				return failure.Retriable("Throttling", "STS is down after the resume", 0, nil)
			}
			return nil
		}
		c.Acquire(key, pod)
		c.WaitIdle()
		clk.Suspend(2 * time.Hour) // the one-hour credentials expire while asleep
		cr, err := c.Get(context.Background(), key, pod)
		if err == nil {
			t.Fatalf("served %s, which expired at %v, at %v", cr.AccessKeyID, cr.Expiration, clk.Now())
		}
	})

	t.Run("a wall clock past the refresh time refreshes at once", func(t *testing.T) {
		c, clk, f := newSuspended(t)
		c.Acquire(key, pod)
		c.WaitIdle()
		clk.Suspend(refreshAt + time.Minute) // past the refresh, not yet expired
		if cr, err := c.Get(context.Background(), key, pod); err != nil || cr.AccessKeyID != "AKID0001" {
			t.Fatalf("Get = %v, %v; want the held, still valid AKID0001", cr, err)
		}
		c.WaitIdle()
		if n := f.calls.Load(); n != 2 {
			t.Fatalf("fetches = %d, want 2: the refresh, due by the wall clock, has not run", n)
		}
		cr, err := c.Get(context.Background(), key, pod)
		if err != nil || cr.AccessKeyID != "AKID0002" {
			t.Fatalf("Get after the refresh = %v, %v; want AKID0002", cr, err)
		}
	})
}

// GetAt takes the caller's reading of the real clock only when the cache runs
// on the real clock: a cache on any other clock judges expiry by its own, so
// a reading from elsewhere can never make expired credentials servable.
func TestGetAtJudgesByTheCachesOwnClockUnlessItIsTheRealOne(t *testing.T) {
	clk := &suspendClock{FakeClock: testingclock.NewFakeClock(t0)}
	f := newFakeFetcher(nil)
	f.now = clk.Now
	f.fail = func(n int64) error {
		if n > 1 {
			return failure.Retriable("Throttling", "STS is down", 0, nil)
		}
		return nil
	}
	c := New(f, Options{Clock: clk, Logger: zaptest.NewLogger(t), Rand: func() float64 { return 0.5 }})
	t.Cleanup(c.Close)
	key, pod := testKey(1), testPod(1)
	c.Acquire(key, pod)
	c.WaitIdle()
	clk.Suspend(2 * time.Hour)
	if cr, err := c.GetAt(context.Background(), key, pod, t0); err == nil {
		t.Fatalf("served %s, expired at %v by the cache's clock (%v), on a caller's reading of %v", cr.AccessKeyID, cr.Expiration, clk.Now(), t0)
	}
	real := New(f, Options{})
	defer real.Close()
	if c.realClock || !real.realClock {
		t.Fatal("realClock is not set exactly for a cache on the real clock")
	}
}
