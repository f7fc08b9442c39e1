// Package metrics defines every Prometheus metric podcreds exports, on a
// registry the caller owns (never the global one), so tests can build as many
// independent sets as they like and read them back with testutil.
//
// Labels take only bounded values (endpoint, HTTP code, result): never a pod,
// namespace, IP address or role ARN, which would grow without bound on a busy
// node and leak who runs what.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Result label values shared by the upstream call metrics.
const (
	ResultSuccess   = "success"
	ResultRetriable = "retriable_error"
	ResultFinal     = "final_error"
)

// Cache lookup outcomes for CacheRequests.
const (
	CacheHit       = "hit"       // served from the cache without waiting
	CacheMiss      = "miss"      // this request started a fetch
	CacheCoalesced = "coalesced" // this request joined a fetch already running
)

// Metrics holds all of podcreds' collectors.
type Metrics struct {
	// HTTPRequests counts answered requests by endpoint and status code.
	HTTPRequests *prometheus.CounterVec
	// HTTPDuration observes handler latency by endpoint.
	HTTPDuration *prometheus.HistogramVec
	// ConnectionsRefused counts connections reset on arrival because their
	// source address already held its share (--max-connections-per-address).
	ConnectionsRefused prometheus.Counter

	// CacheRequests counts credential lookups by outcome.
	CacheRequests *prometheus.CounterVec
	// CacheEntries is the number of credential entries held.
	CacheEntries prometheus.Gauge
	// RefreshFailures counts failed background refreshes.
	RefreshFailures prometheus.Counter
	// ServedRemaining observes the remaining lifetime of served credentials.
	ServedRemaining prometheus.Histogram

	// STSRequests counts AssumeRoleWithWebIdentity calls by result.
	STSRequests *prometheus.CounterVec
	// STSDuration observes AssumeRoleWithWebIdentity latency.
	STSDuration prometheus.Histogram
	// STSChainRequests counts the second hop's AssumeRole calls (into a
	// target role, with session tags) by result.
	STSChainRequests *prometheus.CounterVec
	// STSChainDuration observes the second hop's AssumeRole latency.
	STSChainDuration prometheus.Histogram
	// STSThrottled counts STS throttling answers.
	STSThrottled prometheus.Counter
	// STSBudget is the node's current STS call budget (calls per second).
	STSBudget prometheus.Gauge

	// TokenRequests counts TokenRequest API calls by result.
	TokenRequests *prometheus.CounterVec
	// TokenDuration observes TokenRequest latency.
	TokenDuration prometheus.Histogram

	// PodsIndexed is the number of pods on this node that can be identified
	// by IP.
	PodsIndexed prometheus.Gauge

	// TokenVerifications counts checks of presented ServiceAccount tokens
	// by result (Token* constants).
	TokenVerifications *prometheus.CounterVec
	// Events counts Kubernetes Events about pods, by reason (a fixed set)
	// and result: suppressed because the same pod had an Event of that
	// reason within the interval; dropped because the node's budget of
	// Events was spent or Events were not running; and, of the writes
	// client-go's tools/events makes, emitted for each the API server
	// accepted (a creation, or a patch of an Event's series) and failed for
	// each it refused or that did not reach it (tools/events retries those
	// that did not reach it, each retry counted again).
	Events *prometheus.CounterVec
}

// Results of checking a presented ServiceAccount token, for TokenVerifications.
const (
	TokenValid       = "valid"       // verified and names the calling pod
	TokenInvalid     = "invalid"     // bad signature, audience, issuer or expiry
	TokenOtherPod    = "other_pod"   // valid, but names another pod than the caller
	TokenUnavailable = "unavailable" // the issuer's keys could not be fetched
)

// New registers podcreds' metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	// Upstream calls: from a fast local STS (~1 ms) to a slow regional one.
	upstream := []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	return &Metrics{
		HTTPRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_http_requests_total",
			Help: "Requests answered, by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		HTTPDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "podcreds_http_request_duration_seconds",
			Help: "Time to answer a request, by endpoint.",
			// A cache hit takes microseconds; a miss waits on TokenRequest and STS.
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .5, 1, 2.5},
		}, []string{"endpoint"}),
		ConnectionsRefused: f.NewCounter(prometheus.CounterOpts{
			Name: "podcreds_http_connections_refused_total",
			Help: "Connections reset on arrival because their source address already held its share of a listener's connections.",
		}),
		CacheRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_cache_requests_total",
			Help: "Credential lookups, by result: hit, miss (started a fetch) or coalesced (joined one).",
		}, []string{"result"}),
		CacheEntries: f.NewGauge(prometheus.GaugeOpts{
			Name: "podcreds_cache_entries",
			Help: "Credential entries held (one per namespace, ServiceAccount, role and audience in use on the node).",
		}),
		RefreshFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "podcreds_cache_refresh_failures_total",
			Help: "Background credential refreshes that failed.",
		}),
		ServedRemaining: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "podcreds_served_credentials_remaining_seconds",
			Help:    "Remaining lifetime of the credentials handed to clients.",
			Buckets: []float64{60, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, 21600, 43200},
		}),
		STSRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_sts_requests_total",
			Help: "AssumeRoleWithWebIdentity calls, by result.",
		}, []string{"result"}),
		STSDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "podcreds_sts_request_duration_seconds",
			Help:    "AssumeRoleWithWebIdentity latency.",
			Buckets: upstream,
		}),
		STSChainRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_sts_chain_requests_total",
			Help: "Second-hop AssumeRole calls into target roles, by result.",
		}, []string{"result"}),
		STSChainDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "podcreds_sts_chain_request_duration_seconds",
			Help:    "Second-hop AssumeRole latency.",
			Buckets: upstream,
		}),
		STSThrottled: f.NewCounter(prometheus.CounterOpts{
			Name: "podcreds_sts_throttled_total",
			Help: "AssumeRoleWithWebIdentity calls STS answered with throttling.",
		}),
		STSBudget: f.NewGauge(prometheus.GaugeOpts{
			Name: "podcreds_sts_budget_calls_per_second",
			Help: "This node's current STS call budget; halved on throttling, recovering on success.",
		}),
		TokenRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_tokenrequest_requests_total",
			Help: "ServiceAccount TokenRequest API calls, by result.",
		}, []string{"result"}),
		TokenDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "podcreds_tokenrequest_duration_seconds",
			Help:    "ServiceAccount TokenRequest API latency.",
			Buckets: upstream,
		}),
		PodsIndexed: f.NewGauge(prometheus.GaugeOpts{
			Name: "podcreds_pods_indexed",
			Help: "Pods on this node that can be identified by IP address.",
		}),
		TokenVerifications: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_token_verifications_total",
			Help: "Checks of ServiceAccount tokens presented in Authorization, by result: valid, invalid, other_pod or unavailable.",
		}, []string{"result"}),
		Events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "podcreds_events_total",
			Help: "Kubernetes Events about pods, by reason and result: suppressed (an Event of that reason on that pod within --event-interval), dropped (the node's Event budget spent), emitted (a write the API server accepted: an Event created or its series patched), failed (a write refused or unanswered; retried writes count each time).",
		}, []string{"reason", "result"}),
	}
}

// ResultOf maps an error to a result label value; classify reports whether a
// non-nil error is retriable.
func ResultOf(err error, retriable func(error) bool) string {
	switch {
	case err == nil:
		return ResultSuccess
	case retriable(err):
		return ResultRetriable
	default:
		return ResultFinal
	}
}
