package cache

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/podcreds/podcreds/failure"
)

// TestMaxWaitAnswersPendingWhileTheFetchGoesOn: a slow upstream must not
// make a request outlast its SDK's timeout. The request gets a retriable
// answer after MaxWait; the fetch is not abandoned, and the next request
// after it lands is a hit.
func TestMaxWaitAnswersPendingWhileTheFetchGoesOn(t *testing.T) {
	h := newHarness(t, Options{MaxWait: 50 * time.Millisecond}, nil)
	key, pod := testKey(1), testPod(1)
	entered, release := h.f.hold()
	h.c.Acquire(key, pod) // an entry, so the result is kept
	<-entered             // the prefetch is in STS

	_, err := h.c.Get(context.Background(), key, pod)
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Status != http.StatusServiceUnavailable || fe.RetryAfter <= 0 {
		t.Fatalf("Get during a slow fetch: %v, want 503 with Retry-After", err)
	}
	release()
	h.c.WaitIdle()
	if _, err := h.c.Get(context.Background(), key, pod); err != nil {
		t.Fatalf("Get after the fetch landed: %v", err)
	}
	if n := h.f.calls.Load(); n != 1 {
		t.Fatalf("%d fetches, want the one that was already running", n)
	}
}

// TestOutageRetriesFollowBackoffNotRequests: once credentials are gone and
// STS is down, clients retrying every second must not each cause an STS
// call: they are answered the last error until the scheduled retry.
func TestOutageRetriesFollowBackoffNotRequests(t *testing.T) {
	down := failure.Retriable("UpstreamUnavailable", "STS is down", 0, nil)
	h := newHarness(t, Options{InitialBackoff: time.Second, MaxBackoff: 8 * time.Second}, func(f *fakeFetcher) {
		f.lifetime = 10 * time.Minute
		f.fail = func(n int64) error {
			if n > 1 {
				return down
			}
			return nil
		}
	})
	key, pod := testKey(1), testPod(1)
	h.c.Acquire(key, pod)
	h.c.WaitIdle()
	// Past expiry: the refresh and its retries have all failed.
	for range 60 {
		h.step(15 * time.Second)
	}
	before := h.f.calls.Load()
	for range 100 { // a second of clients hammering, no time passing
		if _, err := h.c.Get(context.Background(), key, pod); !errors.Is(err, down) {
			t.Fatalf("Get during the outage: %v, want the outage's error", err)
		}
	}
	if n := h.f.calls.Load() - before; n != 0 {
		t.Fatalf("100 requests during backoff caused %d fetches, want 0", n)
	}
	h.step(9 * time.Second) // past the longest backoff: one scheduled retry
	if n := h.f.calls.Load() - before; n != 1 {
		t.Fatalf("%d fetches after one backoff period, want 1", n)
	}
}
