// Package bare is the ceiling that podcreds benchmarks compare against: a
// plain net/http server answering every request with a fixed JSON body.
// Whatever podcreds adds on top (pod lookup, cache, rendering) shows up as
// the gap between it and bare on the same machine, under the same load.
package bare

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// NewHandler returns a handler that answers every request with status 200,
// Content-Type application/json and body. It does no per-request work beyond
// what net/http itself does; body must not be modified afterwards.
func NewHandler(body []byte) http.Handler {
	contentType := []string{"application/json"}
	contentLength := []string{strconv.Itoa(len(body))}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		// Assigned directly: the values are canonical already and
		// net/http never modifies them.
		h["Content-Type"] = contentType
		h["Content-Length"] = contentLength
		_, _ = w.Write(body)
	})
}

// Serve listens on addr (for example "127.0.0.1:0") and serves NewHandler(body)
// until stop is called or ctx is cancelled. See ServeHandler.
func Serve(ctx context.Context, addr string, body []byte) (net.Addr, func(), error) {
	return ServeHandler(ctx, addr, NewHandler(body))
}

// ShutdownTimeout bounds how long stop waits for requests in flight before
// closing the remaining connections.
const ShutdownTimeout = 2 * time.Second

// ServeHandler listens on addr and serves h until stop is called or ctx is
// cancelled. It returns the address actually bound, which resolves a port
// of 0. stop is safe to call more than once and from any goroutine; it
// returns once the server has shut down.
func ServeHandler(ctx context.Context, addr string, h http.Handler) (net.Addr, func(), error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		// Serve returns ErrServerClosed after stop, or an accept error
		// that leaves nothing to serve; either way the server is done.
		_ = srv.Serve(ln)
	}()

	var once sync.Once
	stop := func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
			defer cancel()
			if srv.Shutdown(sctx) != nil {
				_ = srv.Close()
			}
			<-served
		})
	}
	// Concurrent calls of once.Do wait for the first, so stop returns only
	// after shutdown even if ctx's AfterFunc got there first.
	unregister := context.AfterFunc(ctx, stop)
	return ln.Addr(), func() { unregister(); stop() }, nil
}
