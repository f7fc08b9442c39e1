package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of one run.
type Result struct {
	// Requests counts requests that finished, successful or not; requests
	// cut short by the caller cancelling ctx are not counted.
	Requests int
	// Errors counts finished requests that failed: transport errors,
	// timeouts, an unexpected status or an unexpected body length.
	Errors int
	// FirstError describes the first failure seen, or is empty.
	FirstError string
	// Elapsed runs from the start of the first request to the end of the
	// last one.
	Elapsed time.Duration
	// RPS is successful requests per second of Elapsed: failures, which are
	// often much faster, do not count as throughput.
	RPS float64
	// Latency quantiles and maximum over successful requests, from the
	// start of the request to its body being read and closed. Quantiles are
	// within 0.4 % (see histogram); Max is exact.
	P50, P90, P99, Max time.Duration
	// ServerCPU is the CPU time the server process spent over the run, when
	// the Target has a CPU sampler (Interleave fills it in).
	ServerCPU time.Duration
}

// Run drives cfg.Concurrency workers against cfg.URL until cfg.Duration has
// passed or cfg.MaxRequests have been started, whichever comes first, and
// waits for requests in flight to finish. Cancelling ctx stops the run
// early: Run then returns what it measured so far along with ctx.Err().
// Errors from the target are counted in the Result, not returned; the error
// is non-nil only for an invalid cfg or a cancelled ctx.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, cfg.Method, cfg.URL, nil)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	if cfg.Header != nil {
		req.Header = cfg.Header
	}
	req.Host = cfg.Host

	st := &runState{cfg: cfg, max: int64(cfg.MaxRequests)}
	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = newWorker(cfg, sourcesFor(cfg.Sources, i, cfg.Concurrency), req.Clone(ctx))
	}

	start := time.Now()
	st.deadline = start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(ctx, st) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all histogram
	res := Result{Elapsed: elapsed, FirstError: st.firstError()}
	for _, w := range workers {
		w.client.CloseIdleConnections()
		all.merge(&w.lat)
		res.Requests += w.requests
		res.Errors += w.errors
	}
	if elapsed > 0 {
		res.RPS = float64(res.Requests-res.Errors) / elapsed.Seconds()
	}
	res.P50, res.P90, res.P99, res.Max = all.quantile(0.50), all.quantile(0.90), all.quantile(0.99), all.max
	return res, ctx.Err()
}

// runState is shared by the workers of one run.
type runState struct {
	cfg      Config
	deadline time.Time
	max      int64
	started  atomic.Int64 // requests started; compared against max

	mu    sync.Mutex // guards first
	first string
}

// take reports whether another request may start, and claims it.
func (s *runState) take() bool {
	return time.Now().Before(s.deadline) && s.started.Add(1) <= s.max
}

func (s *runState) fail(msg string) {
	s.mu.Lock()
	if s.first == "" {
		s.first = msg
	}
	s.mu.Unlock()
}

func (s *runState) firstError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// worker issues one request at a time over its own client, so that its
// connections, and thus its source addresses, are its own. Its counters are
// written only by its goroutine and read after Run's WaitGroup.
type worker struct {
	client   *http.Client
	req      *http.Request // this worker's template; only shallow copies are sent
	lat      histogram
	requests int
	errors   int
}

func newWorker(cfg Config, sources []netip.Addr, req *http.Request) *worker {
	d := &dialer{sources: sources, timeout: cfg.RequestTimeout, closeReset: !cfg.KeepAlive}
	tr := &http.Transport{
		Proxy:               nil, // never route benchmark traffic through $HTTP_PROXY
		DialContext:         d.DialContext,
		DisableKeepAlives:   !cfg.KeepAlive,
		DisableCompression:  true, // measure the bytes the server sends
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	}
	return &worker{
		client: &http.Client{
			Transport: tr,
			// A redirect is a response like any other: check its status.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		req: req,
	}
}

func (w *worker) loop(ctx context.Context, st *runState) {
	var next time.Time
	for ctx.Err() == nil && st.take() {
		if iv := st.cfg.Interval; iv > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = time.Now().Add(iv)
		}
		start := time.Now()
		msg := w.do(ctx, st.cfg)
		took := time.Since(start)
		if ctx.Err() != nil {
			return // cancelled by the caller: neither a success nor a failure
		}
		w.requests++
		if msg != "" {
			w.errors++
			st.fail(msg)
			continue
		}
		w.lat.record(took)
	}
}

// do sends one request and reads its body to the end; it returns a
// description of what went wrong, or "" on success.
func (w *worker) do(ctx context.Context, cfg Config) string {
	rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	resp, err := w.client.Do(w.req.WithContext(rctx))
	if err != nil {
		return err.Error()
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Sprintf("reading body: %v", err)
	case resp.StatusCode != cfg.ExpectStatus:
		return fmt.Sprintf("status %d, want %d", resp.StatusCode, cfg.ExpectStatus)
	case cfg.ExpectBodyLen > 0 && n != int64(cfg.ExpectBodyLen):
		return fmt.Sprintf("body %d bytes, want %d", n, cfg.ExpectBodyLen)
	}
	return ""
}
