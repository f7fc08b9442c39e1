package cache

import (
	"context"
	"testing"
	"time"
)

// newWarmCache returns a cache on the real clock holding one-hour
// credentials for testKey(0).
func newWarmCache(b *testing.B) *Cache {
	b.Helper()
	fetch := FetcherFunc(func(ctx context.Context, key Key, pod PodRef) (*Credentials, error) {
		now := time.Now()
		return NewCredentials("AKID", "secret", "token", "123456789012", now, now.Add(time.Hour)), nil
	})
	c := New(fetch, Options{})
	b.Cleanup(c.Close)
	c.Acquire(testKey(0), testPod(0))
	c.WaitIdle()
	if c.Peek(testKey(0)) == nil {
		b.Fatal("prefetch stored nothing")
	}
	return c
}

// BenchmarkGetHit measures the hot path: a request for credentials the
// cache holds. It must not allocate.
func BenchmarkGetHit(b *testing.B) {
	c := newWarmCache(b)
	ctx, key, pod := context.Background(), testKey(0), testPod(0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, key, pod); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetHitParallel is BenchmarkGetHit from every CPU at once, which
// is what a busy node does to the read lock.
func BenchmarkGetHitParallel(b *testing.B) {
	c := newWarmCache(b)
	ctx, key, pod := context.Background(), testKey(0), testPod(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(ctx, key, pod); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestGetHitDoesNotAllocate(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	key, pod := testKey(0), testPod(0)
	h.c.Acquire(key, pod)
	h.c.WaitIdle()
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { _, _ = h.c.Get(ctx, key, pod) }); n != 0 {
		t.Errorf("a hit allocates %v times, want 0", n)
	}
}
