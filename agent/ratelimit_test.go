package agent

import (
	"errors"
	"net/http"
	"net/netip"
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
