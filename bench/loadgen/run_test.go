package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podcreds/podcreds/bench/bare"
)

var testBody = []byte(`{"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"example","Token":"example","Expiration":"2030-01-01T00:00:00Z"}`)

// testSources returns 127.0.77.1 … 127.0.77.n: on Linux every 127/8 address
// is on lo, so they can be bound without setup.
func testSources(n int) []netip.Addr {
	s := make([]netip.Addr, n)
	for i := range s {
		s[i] = netip.AddrFrom4([4]byte{127, 0, 77, byte(i + 1)})
	}
	return s
}

// recorder is a bare server that remembers who connected to it.
type recorder struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests int
	conns    int            // connections accepted
	remotes  map[string]int // "ip:port" → requests
}

func newRecorder(t *testing.T, h http.Handler) *recorder {
	t.Helper()
	r := &recorder{remotes: map[string]int{}}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests++
		r.remotes[req.RemoteAddr]++
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	r.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
		}
	}
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	if !strings.HasPrefix(r.srv.URL, "http://127.0.0.1:") {
		t.Skipf("test server not on 127.0.0.1: %s", r.srv.URL)
	}
	return r
}

// sourceIPs returns the distinct remote IPs seen, sorted.
func (r *recorder) sourceIPs(t *testing.T) []netip.Addr {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ips []netip.Addr
	for a := range r.remotes {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			t.Fatalf("remote address %q: %v", a, err)
		}
		if !slices.Contains(ips, ap.Addr()) {
			ips = append(ips, ap.Addr())
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips
}

// checkGoroutines fails the test if goroutines started during it are still
// running shortly after its other cleanups (which close the servers) ran.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestRunAgainstBare(t *testing.T) {
	sources := testSources(8)
	tests := []struct {
		name        string
		keepAlive   bool
		concurrency int
	}{
		{"keepalive with one worker per source", true, 8},
		{"a connection per request with one worker per source", false, 8},
		{"a connection per request rotates sources when workers are fewer", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			rec := newRecorder(t, bare.NewHandler(testBody))
			res, err := Run(t.Context(), Config{
				URL:           rec.srv.URL + "/v1/credentials",
				Sources:       sources,
				KeepAlive:     tt.keepAlive,
				Concurrency:   tt.concurrency,
				Duration:      300 * time.Millisecond,
				MaxRequests:   50_000,
				ExpectBodyLen: len(testBody),
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("%+v", res)
			if res.Requests == 0 || res.Errors != 0 || res.FirstError != "" {
				t.Fatalf("want requests and no errors, got %+v", res)
			}
			if res.RPS <= 0 || res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
				t.Errorf("implausible rate or latencies: %+v", res)
			}
			rec.mu.Lock()
			served, conns := rec.requests, rec.conns
			distinct := len(rec.remotes)
			rec.mu.Unlock()
			if served != res.Requests {
				t.Errorf("server saw %d requests, client counted %d", served, res.Requests)
			}
			if got := rec.sourceIPs(t); !slices.Equal(got, sources) {
				t.Errorf("server saw source IPs %v, want %v", got, sources)
			}
			if tt.keepAlive {
				if conns > tt.concurrency {
					t.Errorf("keepalive: %d connections for %d workers", conns, tt.concurrency)
				}
				return
			}
			if conns != res.Requests {
				t.Errorf("connection per request: %d connections for %d requests", conns, res.Requests)
			}
			// Ports may come round again within one (source, destination)
			// pair, but not often in a short run.
			if distinct < res.Requests*9/10 {
				t.Errorf("connection per request: %d distinct source ip:port for %d requests", distinct, res.Requests)
			}
			if tw, ok := timeWaitTo(rec.srv.Listener.Addr()); ok {
				t.Logf("TIME_WAIT sockets on the server port after the run: %d", tw)
				if tw > res.Requests/10 {
					t.Errorf("%d TIME_WAIT sockets after %d requests: closing with RST does not work", tw, res.Requests)
				}
			}
		})
	}
}

// timeWaitTo counts IPv4 TIME_WAIT sockets with addr's port at either end,
// from /proc/net/tcp; ok is false where that file does not exist.
func timeWaitTo(addr net.Addr) (n int, ok bool) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	port := fmt.Sprintf(":%04X", addr.(*net.TCPAddr).Port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "06" {
			continue
		}
		if strings.HasSuffix(fields[1], port) || strings.HasSuffix(fields[2], port) {
			n++
		}
	}
	return n, sc.Err() == nil
}

func TestRunCountsFailures(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/"
	}
	serving := func(h http.Handler) func(t *testing.T) string {
		return func(t *testing.T) string { return newRecorder(t, h).srv.URL + "/" }
	}
	tests := []struct {
		name    string
		url     func(t *testing.T) string
		cfg     Config
		wantErr string
	}{
		{
			name:    "an unexpected status is an error",
			url:     serving(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })),
			wantErr: "status 503, want 200",
		},
		{
			name:    "an expected non-200 status is a success elsewhere, but 200 is then an error",
			url:     serving(bare.NewHandler(testBody)),
			cfg:     Config{ExpectStatus: http.StatusNotFound},
			wantErr: "status 200, want 404",
		},
		{
			name:    "an unexpected body length is an error",
			url:     serving(bare.NewHandler(testBody)),
			cfg:     Config{ExpectBodyLen: len(testBody) + 1},
			wantErr: fmt.Sprintf("body %d bytes, want %d", len(testBody), len(testBody)+1),
		},
		{
			name:    "a refused connection is an error",
			url:     refused,
			wantErr: "connection refused",
		},
	}
	for _, tt := range tests {
		for _, keepAlive := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s (keepalive %v)", tt.name, keepAlive), func(t *testing.T) {
				checkGoroutines(t)
				cfg := tt.cfg
				cfg.URL = tt.url(t)
				cfg.Sources = testSources(2)
				cfg.KeepAlive = keepAlive
				cfg.Concurrency = 2
				cfg.Duration = 100 * time.Millisecond
				cfg.MaxRequests = 50
				res, err := Run(t.Context(), cfg)
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if res.Requests == 0 || res.Errors != res.Requests {
					t.Errorf("want every request to fail, got %+v", res)
				}
				if res.RPS != 0 || res.P99 != 0 {
					t.Errorf("failures counted as throughput or latency: %+v", res)
				}
				if !strings.Contains(res.FirstError, tt.wantErr) {
					t.Errorf("first error %q, want it to contain %q", res.FirstError, tt.wantErr)
				}
			})
		}
	}
}

func TestRunIsBounded(t *testing.T) {
	t.Run("MaxRequests caps the count before Duration ends", func(t *testing.T) {
		checkGoroutines(t)
		rec := newRecorder(t, bare.NewHandler(testBody))
		start := time.Now()
		res, err := Run(t.Context(), Config{URL: rec.srv.URL, Concurrency: 4, Duration: time.Minute, MaxRequests: 37})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Requests != 37 || res.Errors != 0 {
			t.Errorf("want exactly 37 good requests, got %+v", res)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %v for 37 requests", took)
		}
	})
	t.Run("cancelling ctx stops the run and is reported", func(t *testing.T) {
		checkGoroutines(t)
		rec := newRecorder(t, bare.NewHandler(testBody))
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := Run(ctx, Config{URL: rec.srv.URL, Concurrency: 2, Duration: time.Minute})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run: %v, want the context's error", err)
		}
		if res.Requests == 0 || res.Errors != 0 {
			t.Errorf("want the requests done before cancelling, and no errors: %+v", res)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("took %v to stop", took)
		}
	})
	t.Run("a stuck server is cut off by RequestTimeout", func(t *testing.T) {
		checkGoroutines(t)
		release := make(chan struct{})
		rec := newRecorder(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
		defer close(release) // before the server's Close, which waits for handlers
		res, err := Run(t.Context(), Config{URL: rec.srv.URL, Concurrency: 1, Duration: 10 * time.Millisecond, RequestTimeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Requests != 1 || res.Errors != 1 || !strings.Contains(res.FirstError, "deadline exceeded") {
			t.Errorf("want one timed-out request, got %+v", res)
		}
	})
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"an empty URL is rejected", Config{}},
		{"a relative URL is rejected", Config{URL: "/v1/credentials"}},
		{"a non-HTTP scheme is rejected", Config{URL: "ftp://127.0.0.1/"}},
		{"an invalid source is rejected", Config{URL: "http://127.0.0.1/", Sources: []netip.Addr{{}}}},
		{"a negative concurrency is rejected", Config{URL: "http://127.0.0.1/", Concurrency: -1}},
		{"a negative duration is rejected", Config{URL: "http://127.0.0.1/", Duration: -time.Second}},
		{"a negative request cap is rejected", Config{URL: "http://127.0.0.1/", MaxRequests: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(t.Context(), tt.cfg); err == nil {
				t.Error("Run accepted the config")
			}
		})
	}
	t.Run("defaults bound every run", func(t *testing.T) {
		c, err := Config{URL: "http://127.0.0.1/"}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if c.Duration != DefaultDuration || c.MaxRequests != DefaultMaxRequests || c.Concurrency != DefaultConcurrency ||
			c.RequestTimeout != DefaultRequestTimeout || c.ExpectStatus != http.StatusOK || c.Method != http.MethodGet {
			t.Errorf("defaults not applied: %+v", c)
		}
	})
}

func TestSourcesFor(t *testing.T) {
	all := testSources(5)
	tests := []struct {
		name    string
		all     []netip.Addr
		workers int
		want    [][]netip.Addr // per worker
	}{
		{"no sources leaves the choice to the kernel", nil, 2, [][]netip.Addr{nil, nil}},
		{"more workers than sources share them round-robin", all[:2], 3, [][]netip.Addr{{all[0]}, {all[1]}, {all[0]}}},
		{"fewer workers than sources split them", all, 2, [][]netip.Addr{{all[0], all[2], all[4]}, {all[1], all[3]}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for w, want := range tt.want {
				if got := sourcesFor(tt.all, w, tt.workers); !slices.Equal(got, want) {
					t.Errorf("worker %d: got %v, want %v", w, got, want)
				}
			}
		})
	}
}

func TestRunSendsMethodHostAndHeaders(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	var bad []string
	rec := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.Host != "169.254.170.23" || r.Header.Get("Authorization") != "token" {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("%s host %q auth %q", r.Method, r.Host, r.Header.Get("Authorization")))
			mu.Unlock()
		}
		bare.NewHandler(testBody).ServeHTTP(w, r)
	}))
	for _, keepAlive := range []bool{true, false} {
		res, err := Run(t.Context(), Config{
			URL: rec.srv.URL, Method: http.MethodPut, Host: "169.254.170.23",
			Header:    http.Header{"Authorization": {"token"}},
			KeepAlive: keepAlive, Concurrency: 2, MaxRequests: 10,
		})
		if err != nil || res.Requests != 10 || res.Errors != 0 {
			t.Errorf("keepalive %v: %+v, %v", keepAlive, res, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("requests arrived as %v", bad)
	}
}

func TestRunPacesWorkersByInterval(t *testing.T) {
	r := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	res, err := Run(t.Context(), Config{URL: r.srv.URL, Concurrency: 2, Duration: 500 * time.Millisecond, Interval: 100 * time.Millisecond, KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	// Two workers, one request per 100 ms each, started in the first 500 ms:
	// at 0, 100, …, 500 ms at most, six each (unpaced: thousands).
	if res.Requests < 2 || res.Requests > 12 || res.Errors != 0 {
		t.Errorf("%d requests (%d errors) in 500 ms from two workers paced at 100 ms, want 2–12", res.Requests, res.Errors)
	}
}
