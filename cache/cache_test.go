package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	const callers = 100
	tests := []struct {
		name string
		// prepare sets up the key and returns how many fetches happened.
		prepare   func(h *harness, key Key) int64
		wantKept  bool
		wantTotal int64 // fetches when all is done
	}{
		{
			name:      "a key nobody acquired shares the fetch but keeps nothing",
			prepare:   func(h *harness, key Key) int64 { return 0 },
			wantKept:  false,
			wantTotal: 2, // nothing was kept, so the next Get fetches again
		},
		{
			name: "an acquired key whose prefetch failed stores the shared result",
			prepare: func(h *harness, key Key) int64 {
				// A final failure leaves the entry with no credentials and
				// no retry scheduled; once it is forgotten, the next
				// requests fetch on the request path. (After a retriable
				// failure they would be answered the error until the
				// scheduled retry instead: TestOutageRetriesFollowBackoffNotRequests.)
				h.f.fail = func(n int64) error {
					if n == 1 {
						return failure.Final(403, "AccessDenied", "not yet", nil)
					}
					return nil
				}
				h.c.Acquire(key, testPod(0))
				h.c.WaitIdle()
				h.step(DefaultFinalErrorTTL + time.Second)
				return 1
			},
			wantKept:  true,
			wantTotal: 2, // the failed prefetch and the shared fetch; the next Get hits
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{}, nil)
			key := testKey(1)
			before := tt.prepare(h, key)

			entered, release := h.f.hold()
			var waiting sync.WaitGroup
			waiting.Add(callers)
			h.c.waitHook = waiting.Done

			got := make([]*Credentials, callers)
			var done sync.WaitGroup
			for i := range callers {
				done.Go(func() {
					cr, err := h.c.Get(context.Background(), key, testPod(i))
					if err != nil {
						t.Errorf("caller %d: %v", i, err)
					}
					got[i] = cr
				})
			}
			<-entered
			waiting.Wait() // every caller has joined the one fetch
			release()
			done.Wait()
			h.c.WaitIdle()

			if n := h.f.calls.Load() - before; n != 1 {
				t.Errorf("fetches for %d concurrent misses = %d, want 1", callers, n)
			}
			for i, cr := range got {
				if cr == nil || cr != got[0] {
					t.Fatalf("caller %d got %p, caller 0 got %p: want the same credentials", i, cr, got[0])
				}
			}
			if m, c := h.requests(metrics.CacheMiss), h.requests(metrics.CacheCoalesced); m != 1 || c != callers-1 {
				t.Errorf("misses, coalesced = %v, %v; want 1, %d", m, c, callers-1)
			}
			if kept := h.c.Peek(key) == got[0]; kept != tt.wantKept {
				t.Errorf("result kept in the cache = %v, want %v", kept, tt.wantKept)
			}
			h.c.waitHook = nil
			h.get(key, testPod(0))
			if n := h.f.calls.Load(); n != tt.wantTotal {
				t.Errorf("fetches after one more Get = %d, want %d", n, tt.wantTotal)
			}
		})
	}
}

func TestImpatientCallerLeavesSharedFetchRunning(t *testing.T) {
	tests := []struct {
		name string
		// prepare leaves key acquired but without credentials.
		prepare   func(h *harness, key Key)
		wantCalls int64
	}{
		{
			name:      "a caller that joined the prefetch leaves it running",
			prepare:   func(h *harness, key Key) {},
			wantCalls: 1,
		},
		{
			name: "the caller that started the fetch leaves it running",
			prepare: func(h *harness, key Key) {
				h.f.fail = func(n int64) error {
					if n == 1 {
						return failure.Final(403, "AccessDenied", "not yet", nil)
					}
					return nil
				}
				h.c.Acquire(key, testPod(0))
				h.c.WaitIdle()                             // the prefetch failed for good
				h.step(DefaultFinalErrorTTL + time.Second) // and is forgotten
			},
			wantCalls: 2, // the failed prefetch and the shared fetch
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{}, nil)
			key := testKey(1)
			tt.prepare(h, key)
			entered, release := h.f.hold()
			h.c.Acquire(key, testPod(0)) // prefetches in the first case only

			ctx, cancel := context.WithCancel(context.Background())
			h.c.waitHook = func() {
				<-entered // the shared fetch is under way
				cancel()
			}
			if _, err := h.c.Get(ctx, key, testPod(0)); !errors.Is(err, context.Canceled) {
				t.Fatalf("impatient Get = %v, want context.Canceled", err)
			}
			h.c.waitHook = nil
			release()
			h.c.WaitIdle()

			cr := h.get(key, testPod(0))
			if cr == nil || cr != h.c.Peek(key) {
				t.Fatalf("Get after the shared fetch = %v, want the stored credentials", cr)
			}
			if n := h.f.calls.Load(); n != tt.wantCalls {
				t.Errorf("fetches = %d, want %d: the cancelled caller must not cancel the fetch, and the next Get must hit", n, tt.wantCalls)
			}
			if got := h.requests(metrics.CacheHit); got != 1 {
				t.Errorf("hits = %v, want 1", got)
			}
		})
	}
}

func TestAcquirePrefetches(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	key := testKey(1)
	h.c.Acquire(key, testPod(1))
	h.c.Acquire(key, testPod(2)) // a second user neither fetches nor waits
	h.c.Acquire(key, testPod(1)) // nor does acquiring a user twice
	h.c.WaitIdle()
	if n := h.f.calls.Load(); n != 1 {
		t.Fatalf("fetches after Acquire = %d, want 1", n)
	}
	if rec := h.f.recorded()[0]; !rec.background || rec.pod != testPod(1) {
		t.Errorf("prefetch = %+v, want a background fetch as pod-1", rec)
	}

	cr := h.get(key, testPod(2))
	if cr.AccessKeyID != "AKID0001" {
		t.Errorf("Get returned %s, want the prefetched AKID0001", cr.AccessKeyID)
	}
	if n := h.f.calls.Load(); n != 1 {
		t.Errorf("fetches after Get = %d, want 1 (a hit)", n)
	}
	if hit, miss := h.requests(metrics.CacheHit), h.requests(metrics.CacheMiss); hit != 1 || miss != 0 {
		t.Errorf("hits, misses = %v, %v; want 1, 0", hit, miss)
	}
	if got := testutil.ToFloat64(h.m.CacheEntries); got != 1 || h.c.Len() != 1 {
		t.Errorf("entries gauge, Len = %v, %d; want 1, 1", got, h.c.Len())
	}
}

func TestReleaseOfLastUser(t *testing.T) {
	tests := []struct {
		name string
		// run releases every user of key, which was acquired by pods 1
		// and 2 and holds credentials.
		run       func(t *testing.T, h *harness, key Key)
		wantCalls int64
	}{
		{
			name: "the entry is dropped and never fetched for again",
			run: func(t *testing.T, h *harness, key Key) {
				h.c.Release(key, testPod(1).UID)
				if h.c.Len() != 1 || h.c.Peek(key) == nil {
					t.Fatalf("after releasing one of two users: Len %d, Peek %v; want the entry kept", h.c.Len(), h.c.Peek(key))
				}
				h.c.Release(key, testPod(9).UID) // unknown pods change nothing
				h.c.Release(testKey(9), testPod(2).UID)
				h.c.Release(key, testPod(2).UID)
			},
			wantCalls: 1,
		},
		{
			name: "a refresh in flight when the entry is dropped does not bring it back",
			run: func(t *testing.T, h *harness, key Key) {
				entered, release := h.f.hold()
				h.clk.Step(refreshAt)
				if n := <-entered; n != 2 {
					t.Fatalf("fetch %d started, want the refresh (2)", n)
				}
				h.c.Release(key, testPod(1).UID)
				h.c.Release(key, testPod(2).UID)
				release()
			},
			wantCalls: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{}, nil)
			key := testKey(1)
			h.c.Acquire(key, testPod(1))
			h.c.Acquire(key, testPod(2))
			h.c.WaitIdle()

			tt.run(t, h, key)
			h.c.WaitIdle()
			if h.c.Len() != 0 || h.c.Peek(key) != nil {
				t.Errorf("after the last Release: Len %d, Peek %v; want no entry", h.c.Len(), h.c.Peek(key))
			}
			if got := testutil.ToFloat64(h.m.CacheEntries); got != 0 {
				t.Errorf("entries gauge = %v, want 0", got)
			}
			if w := h.clk.Waiters(); w != 0 {
				t.Errorf("timers pending = %d, want 0", w)
			}
			for range 20 * 60 { // 20 hours, far past every refresh time
				h.step(time.Minute)
			}
			if n := h.f.calls.Load(); n != tt.wantCalls {
				t.Errorf("fetches = %d, want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestClose(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	for i := range 3 {
		h.c.Acquire(testKey(i), testPod(i))
	}
	h.c.WaitIdle()
	entered, release := h.f.hold()
	defer release()
	h.clk.Step(refreshAt) // the three refreshes start and block
	for range 3 {
		<-entered
	}

	h.c.Close() // cancels the blocked fetches and waits for them
	if w := h.clk.Waiters(); w != 0 {
		t.Errorf("timers pending after Close = %d, want 0", w)
	}
	h.c.Acquire(testKey(7), testPod(7))
	if h.c.Len() != 3 {
		t.Errorf("Len after Acquire on a closed cache = %d, want 3", h.c.Len())
	}
	if _, err := h.c.Get(context.Background(), testKey(7), testPod(7)); !errors.Is(err, ErrClosed) {
		t.Errorf("Get needing a fetch after Close = %v, want ErrClosed", err)
	}
	if cr := h.get(testKey(0), testPod(0)); cr.AccessKeyID == "" {
		t.Errorf("Get of held credentials after Close = %v, want them served", cr)
	}
	h.c.Close() // a second Close is harmless
}

func TestRefreshUsesNewestUser(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	key := testKey(1)
	for i := 1; i <= 3; i++ {
		h.c.Acquire(key, testPod(i))
	}
	h.c.Release(key, testPod(3).UID)
	h.c.WaitIdle()
	h.step(refreshAt)

	recs := h.f.recorded()
	if len(recs) != 2 {
		t.Fatalf("fetches = %d, want the prefetch and one refresh", len(recs))
	}
	if recs[0].pod != testPod(1) || recs[1].pod != testPod(2) {
		t.Errorf("prefetch as %s and refresh as %s; want pod-1 (the first user) and pod-2 (the newest still there)", recs[0].pod.Name, recs[1].pod.Name)
	}
}

// TestARefReadsItsEntryUntilTheEntryIsDropped checks that a Ref serves its
// entry's credentials, and that a Ref kept past its entry (the last user
// released, the key acquired anew) serves the new entry's, never the
// dropped one's.
func TestARefReadsItsEntryUntilTheEntryIsDropped(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	key, pod := testKey(1), testPod(1)
	get := func(ref Ref) string {
		t.Helper()
		cr, err := h.c.GetRefAt(context.Background(), ref, pod, h.clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return cr.AccessKeyID
	}
	if got := get(h.c.Ref(key)); got != "AKID0001" {
		t.Fatalf("a Ref taken before the key has an entry served %s, want the first fetch's AKID0001", got)
	}
	h.c.Acquire(key, pod)
	h.c.WaitIdle()
	ref := h.c.Ref(key)
	if ref.Key() != key {
		t.Fatalf("Ref's key %+v, want %+v", ref.Key(), key)
	}
	if got := get(ref); got != "AKID0002" {
		t.Fatalf("served %s through the Ref, want its entry's AKID0002", got)
	}
	h.c.Release(key, pod.UID)
	h.c.Acquire(key, pod)
	h.c.WaitIdle()
	if got := get(ref); got != "AKID0003" {
		t.Fatalf("a Ref to a dropped entry served %s, want the new entry's AKID0003", got)
	}
	if n := h.f.calls.Load(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
}
