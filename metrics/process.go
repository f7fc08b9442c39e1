package metrics

import (
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Build names a binary for podcreds_build_info.
type Build struct {
	Version, Commit, GoVersion string
}

// RegisterProcess registers what describes the process rather than its
// requests: the Go runtime and process collectors and
// podcreds_build_info{version,commit,go_version}, always 1, so dashboards
// can show which build each node runs and alerts can join on it.
func RegisterProcess(reg prometheus.Registerer, b Build) {
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "podcreds_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "go_version": b.GoVersion},
	})
	info.Set(1)
	// go_gc_heap_live_bytes (the heap marked live by the last collection)
	// beside the usual go_memstats_*: the figure that says what the agent
	// keeps, without the garbage a heap-in-use reading includes.
	liveHeap := collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(liveHeap)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
}

// RegisterReady registers podcreds_ready, 1 while ready reports true (the
// agent's /readyz) and 0 otherwise, read at each scrape.
func RegisterReady(reg prometheus.Registerer, ready func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "podcreds_ready",
		Help: "1 while the agent is ready to serve credentials (its /readyz), 0 while it starts or drains.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}
