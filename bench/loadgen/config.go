// Package loadgen drives HTTP load at a credential endpoint the way pods do:
// many clients, each identified by its source IP, asking for small responses
// either over kept-alive connections or with a new connection per request
// (as SDKs that close their connection after each fetch do).
//
// Runs are always bounded both in time (Config.Duration) and in count
// (Config.MaxRequests). Interleave alternates several targets round by round
// so that drift on a shared, noisy machine lands on all of them alike, and
// FormatTable prints the medians side by side.
package loadgen

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// Defaults applied by Run to zero fields of Config. They keep an
// unconfigured run short: at most a second and a bounded number of requests.
const (
	DefaultConcurrency    = 8
	DefaultDuration       = time.Second
	DefaultMaxRequests    = 200_000
	DefaultRequestTimeout = 5 * time.Second
)

// Config describes one load run. The zero value of every optional field
// means its default; Run never modifies the caller's Config.
type Config struct {
	// URL is the absolute http:// or https:// URL every request fetches.
	URL string
	// Method is the request method; empty means GET.
	Method string
	// Host, when set, overrides the Host header (the URL still decides
	// where to connect).
	Host string
	// Sources are the client source addresses, each pod being one address.
	// Worker w dials from Sources[w mod len(Sources)]; when there are more
	// sources than workers, each worker rotates over its own share of them
	// on every new connection, so all sources are used. Empty means the
	// kernel picks the source.
	Sources []netip.Addr
	// KeepAlive reuses each worker's connection across requests. When
	// false, every request dials a new connection (from the worker's next
	// source) and closes it afterwards.
	KeepAlive bool
	// Concurrency is the number of workers, each with one request in
	// flight at a time; 0 means DefaultConcurrency.
	Concurrency int
	// Duration bounds the run: no request starts after it has passed, and
	// requests already in flight are allowed to finish. 0 means
	// DefaultDuration.
	Duration time.Duration
	// MaxRequests is a hard cap on the number of requests started across
	// all workers; 0 means DefaultMaxRequests.
	MaxRequests int
	// RequestTimeout bounds each request, from dial to the end of the body;
	// 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Header is added to every request (for example Authorization).
	Header http.Header
	// ExpectStatus is the status a successful response has; 0 means 200.
	ExpectStatus int
	// ExpectBodyLen, when positive, is the exact body length of a
	// successful response.
	ExpectBodyLen int
	// Interval, when positive, paces each worker: it starts a request at
	// most once per Interval (as an SDK asks at its own pace, not as fast
	// as it can).
	Interval time.Duration
}

// Mode names the connection mode: "keepalive" or "conn/req".
func (c Config) Mode() string {
	if c.KeepAlive {
		return "keepalive"
	}
	return "conn/req"
}

// withDefaults returns a validated copy of c with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("loadgen: url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("loadgen: url %q: want an absolute http or https URL", c.URL)
	}
	for i, s := range c.Sources {
		if !s.IsValid() {
			return c, fmt.Errorf("loadgen: source %d is not a valid address", i)
		}
	}
	if c.Concurrency < 0 || c.Duration < 0 || c.MaxRequests < 0 || c.RequestTimeout < 0 || c.Interval < 0 ||
		c.ExpectStatus < 0 || c.ExpectBodyLen < 0 {
		return c, errors.New("loadgen: negative concurrency, duration, count, timeout or expectation")
	}
	if c.Method == "" {
		c.Method = http.MethodGet
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.MaxRequests == 0 {
		c.MaxRequests = DefaultMaxRequests
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ExpectStatus == 0 {
		c.ExpectStatus = http.StatusOK
	}
	c.Sources = append([]netip.Addr(nil), c.Sources...)
	c.Header = c.Header.Clone()
	return c, nil
}

// sourcesFor returns the sources worker w of n dials from, in rotation
// order: every worker gets at least one source, and every source belongs to
// at least one worker.
func sourcesFor(all []netip.Addr, w, n int) []netip.Addr {
	if len(all) == 0 {
		return nil
	}
	if len(all) <= n {
		return []netip.Addr{all[w%len(all)]}
	}
	var own []netip.Addr
	for i := w; i < len(all); i += n {
		own = append(own, all[i])
	}
	return own
}
