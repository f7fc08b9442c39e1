package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Admission results, the values of podcreds_webhook_admissions_total's
// result label.
const (
	ResultInjected  = "injected"   // patched
	ResultUnchanged = "unchanged"  // admitted as is: no role, opted out, already injected, every container skipped
	ResultRefused   = "refused"    // denied: the pod asks for something the webhook will not do
	ResultError     = "error"      // 5xx: a ServiceAccount could not be read; the failurePolicy decides
	ResultBad       = "badrequest" // 4xx before a decision: not a pod CREATE AdmissionReview
)

// Metrics are the webhook's collectors, on a registry the caller owns.
type Metrics struct {
	// Admissions counts answered reviews by result.
	Admissions *prometheus.CounterVec
	// Duration observes the time to answer a review.
	Duration prometheus.Histogram
	// ServiceAccountReads counts ServiceAccount reads by source: the
	// informer, or a live GET (a miss, or a copy without a role that may lag).
	ServiceAccountReads *prometheus.CounterVec
}

// NewMetrics registers the webhook's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		Admissions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_webhook_admissions_total",
			Help: "Pod admission reviews answered, by result.",
		}, []string{"result"}),
		Duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "podcreds_webhook_admission_duration_seconds",
			Help:    "Time to answer a pod admission review.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		ServiceAccountReads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_webhook_serviceaccount_reads_total",
			Help: "ServiceAccount reads for admission, by source (informer or live).",
		}, []string{"source"}),
	}
	for _, r := range []string{ResultInjected, ResultUnchanged, ResultRefused, ResultError, ResultBad} {
		m.Admissions.WithLabelValues(r)
	}
	for _, s := range []string{"informer", "live"} {
		m.ServiceAccountReads.WithLabelValues(s)
	}
	return m
}
