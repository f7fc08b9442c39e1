package agent

import (
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podcreds/podcreds/failure"
)

func TestSourceLimiter(t *testing.T) {
	l := newSourceLimiter(10, 5)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	now := time.Unix(1000, 0)
	for i := range 5 {
		if err := l.allow(a, now); err != nil {
			t.Fatalf("request %d within the burst refused: %v", i, err)
		}
	}
	err := l.allow(a, now)
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Status != http.StatusTooManyRequests || fe.RetryAfter < time.Second {
		t.Fatalf("request past the burst: %v, want 429 with Retry-After", err)
	}
	if err := l.allow(b, now); err != nil {
		t.Fatalf("one address's flood limited another: %v", err)
	}
	if err := l.allow(a, now.Add(150*time.Millisecond)); err != nil {
		t.Fatalf("the bucket did not refill at 10/s: %v", err)
	}
	// Idle buckets are swept once they would be full again.
	l.allow(netip.MustParseAddr("10.0.0.3"), now.Add(2*time.Minute))
	n := 0
	l.buckets.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d buckets after a sweep, want only the new one", n)
	}
	if newSourceLimiter(-1, 0).allow(a, now) != nil {
		t.Error("a disabled limiter refused a request")
	}
}

// The bucket is one word changed by compare-and-swap: however many requests
// of one address race, exactly the burst is let through at one instant, and
// the rate after it.
func TestSourceLimiterGrantsExactlyTheBurstToRacingRequests(t *testing.T) {
	const burst = 100
	l := newSourceLimiter(10, burst)
	ip := netip.MustParseAddr("10.0.0.1")
	now := time.Unix(1000, 0)
	var granted atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if l.allow(ip, now) == nil {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := granted.Load(); n != burst {
		t.Fatalf("%d of 400 racing requests granted at one instant, want the burst, %d", n, burst)
	}
	// One token per 100 ms after that: a second gives ten more, no more.
	later := 0
	for range 20 {
		if l.allow(ip, now.Add(time.Second)) == nil {
			later++
		}
	}
	if later != 10 {
		t.Fatalf("%d granted a second after the burst at 10/s, want 10", later)
	}
}

// A connection keeps its address's bucket (allowFrom). When the sweep drops
// that bucket and another connection of the address starts a new one, the
// first must charge the new one too: an address has one budget, however
// many connections it opens and however long they stay.
func TestAConnectionsKeptBucketIsNeverASecondBudget(t *testing.T) {
	l := newSourceLimiter(1, 2)
	ip := netip.MustParseAddr("10.0.0.1")
	now := time.Unix(1000, 0)
	var first, second atomic.Pointer[bucket]
	if err := l.allowFrom(&first, ip, now); err != nil || first.Load() == nil {
		t.Fatalf("first request: %v, kept bucket %v", err, first.Load())
	}
	later := now.Add(2 * time.Minute)
	l.allow(netip.MustParseAddr("10.0.0.9"), later) // a new address: the sweep runs
	for i := range 2 {
		if err := l.allowFrom(&second, ip, later); err != nil {
			t.Fatalf("request %d of the burst on a new connection refused: %v", i, err)
		}
	}
	if err := l.allowFrom(&first, ip, later); err == nil {
		t.Fatal("the old connection was granted a request past its address's burst: it charged the bucket the sweep dropped")
	}
	if first.Load() != second.Load() {
		t.Error("the two connections keep different buckets for one address")
	}
}
