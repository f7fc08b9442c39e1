package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is where every fake clock starts.
var t0 = time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)

func testKey(i int) Key {
	return Key{
		Namespace:       "shop",
		ServiceAccount:  fmt.Sprintf("sa-%d", i),
		RoleARN:         "arn:aws:iam::123456789012:role/shop",
		Audience:        "sts.amazonaws.com",
		TokenExpiration: time.Hour,
	}
}

func testPod(i int) PodRef {
	return PodRef{Namespace: "shop", Name: fmt.Sprintf("pod-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))}
}

// fetchRecord is one call to fakeFetcher.
type fetchRecord struct {
	n          int64
	key        Key
	pod        PodRef
	at         time.Time
	background bool
}

// fakeFetcher hands out numbered credentials (AKID0001, AKID0002, …) that
// live for lifetime on clk, and records every call.
type fakeFetcher struct {
	clk      *testingclock.FakeClock
	now      func() time.Time // if set, the time source instead of clk
	lifetime time.Duration
	// fail, if set, decides call n's outcome (n from 1): a non-nil error
	// fails it. Set before the cache is used.
	fail func(n int64) error

	calls   atomic.Int64
	bgCalls atomic.Int64

	mu      sync.Mutex
	gate    chan struct{} // while non-nil, calls wait for it to be closed
	entered chan int64    // if non-nil, each call sends its number on entry
	records []fetchRecord
}

func newFakeFetcher(clk *testingclock.FakeClock) *fakeFetcher {
	return &fakeFetcher{clk: clk, lifetime: time.Hour}
}

// hold makes later calls wait until the returned function is called, and
// announce themselves on the returned channel.
func (f *fakeFetcher) hold() (entered <-chan int64, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gate, ent := make(chan struct{}), make(chan int64, 1000)
	f.gate, f.entered = gate, ent
	return ent, func() {
		f.mu.Lock()
		if f.gate == gate {
			f.gate, f.entered = nil, nil
		}
		f.mu.Unlock()
		close(gate)
	}
}

func (f *fakeFetcher) Fetch(ctx context.Context, key Key, pod PodRef) (*Credentials, error) {
	n := f.calls.Add(1)
	bg := BackgroundFetch(ctx)
	if bg {
		f.bgCalls.Add(1)
	}
	f.mu.Lock()
	f.records = append(f.records, fetchRecord{n: n, key: key, pod: pod, at: f.time(), background: bg})
	gate, entered := f.gate, f.entered
	f.mu.Unlock()
	if entered != nil {
		entered <- n
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.fail != nil {
		if err := f.fail(n); err != nil {
			return nil, err
		}
	}
	now := f.time()
	return NewCredentials(fmt.Sprintf("AKID%04d", n), "secret", "token", "123456789012", now, now.Add(f.lifetime)), nil
}

func (f *fakeFetcher) time() time.Time {
	if f.now != nil {
		return f.now()
	}
	return f.clk.Now()
}

// recorded returns a copy of the calls so far. fail may call it: a call is
// recorded before fail decides its outcome.
func (f *fakeFetcher) recorded() []fetchRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fetchRecord(nil), f.records...)
}

// harness is a cache on a fake clock with its own metrics.
type harness struct {
	t   *testing.T
	c   *Cache
	clk *testingclock.FakeClock
	f   *fakeFetcher
	m   *metrics.Metrics
}

// refreshAt is when the default policy refreshes the harness's one-hour
// credentials, with Rand at its default 0.5: 2/3·60 min − 0.5·6 min.
const refreshAt = 37 * time.Minute

// newHarness builds a cache over a fresh fake fetcher. opts' Clock, Metrics
// and Logger are filled in; Rand defaults to a constant 0.5 so schedules are
// predictable. configure, if non-nil, adjusts the fetcher before use.
func newHarness(t *testing.T, opts Options, configure func(*fakeFetcher)) *harness {
	t.Helper()
	clk := testingclock.NewFakeClock(t0)
	f := newFakeFetcher(clk)
	if configure != nil {
		configure(f)
	}
	m := metrics.New(prometheus.NewRegistry())
	opts.Clock, opts.Metrics, opts.Logger = clk, m, zaptest.NewLogger(t)
	if opts.Rand == nil {
		opts.Rand = func() float64 { return 0.5 }
	}
	c := New(f, opts)
	t.Cleanup(c.Close)
	return &harness{t: t, c: c, clk: clk, f: f, m: m}
}

// step advances the clock and waits for whatever that set off.
func (h *harness) step(d time.Duration) {
	h.clk.Step(d)
	h.c.WaitIdle()
}

func (h *harness) requests(result string) float64 {
	return testutil.ToFloat64(h.m.CacheRequests.WithLabelValues(result))
}

// get calls Get and fails the test on error.
func (h *harness) get(key Key, pod PodRef) *Credentials {
	h.t.Helper()
	cr, err := h.c.Get(context.Background(), key, pod)
	if err != nil {
		h.t.Fatalf("Get(%s) = %v", key.ServiceAccount, err)
	}
	return cr
}
