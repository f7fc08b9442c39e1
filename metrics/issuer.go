package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Issuer holds the collectors of `podcreds issuer`.
type Issuer struct {
	// Syncs counts syncs by result: success (whether or not anything
	// changed) or failure.
	Syncs *prometheus.CounterVec
	// Writes counts objects written (only changed ones are).
	Writes prometheus.Counter
	// KeysPublished is the number of keys in the published JWKS.
	KeysPublished prometheus.Gauge
	// IsLeader is 1 while this replica holds the Lease.
	IsLeader prometheus.Gauge

	lastSuccess atomic.Int64 // unix nanoseconds; 0 before the first
}

// NewIssuer registers the issuer's metrics on reg. now is the clock behind
// podcreds_issuer_seconds_since_last_sync.
func NewIssuer(reg prometheus.Registerer, now func() time.Time) *Issuer {
	f := promauto.With(reg)
	m := &Issuer{
		Syncs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_issuer_syncs_total",
			Help: "Publisher syncs, by result (success or failure). A success writes only what changed.",
		}, []string{"result"}),
		Writes: f.NewCounter(prometheus.CounterOpts{
			Name: "podcreds_issuer_writes_total",
			Help: "Documents written to the target because their content changed.",
		}),
		KeysPublished: f.NewGauge(prometheus.GaugeOpts{
			Name: "podcreds_issuer_keys_published",
			Help: "Keys in the published JWKS (the API server's and those still within the overlap window).",
		}),
		IsLeader: f.NewGauge(prometheus.GaugeOpts{
			Name: "podcreds_issuer_leader",
			Help: "1 while this replica holds the publisher Lease and publishes.",
		}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "podcreds_issuer_seconds_since_last_sync",
		Help: "Seconds since this replica's last successful sync; -1 before the first.",
	}, func() float64 {
		last := m.lastSuccess.Load()
		if last == 0 {
			return -1
		}
		return now().Sub(time.Unix(0, last)).Seconds()
	})
	return m
}

// SyncSucceeded records a successful sync at t.
func (m *Issuer) SyncSucceeded(t time.Time) {
	m.Syncs.WithLabelValues(ResultSuccess).Inc()
	m.lastSuccess.Store(t.UnixNano())
}

// SyncFailed records a failed sync.
func (m *Issuer) SyncFailed() { m.Syncs.WithLabelValues("failure").Inc() }

// LastSuccess returns when the last successful sync happened (zero before
// the first).
func (m *Issuer) LastSuccess() time.Time {
	if n := m.lastSuccess.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
