//go:build floor_noprom

package main

import (
	"fmt"
	"net/http"
	"runtime"
)

// metricsHandler writes, without client_golang, the three figures
// bench/scale reads, under the names client_golang gives them.
func metricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "go_memstats_heap_alloc_bytes %d\ngo_memstats_heap_inuse_bytes %d\ngo_goroutines %d\n",
			m.HeapAlloc, m.HeapInuse, runtime.NumGoroutine())
	})
}
