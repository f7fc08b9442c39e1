package cache

import (
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/metrics"
)

// Defaults for the zero values of Options. See the package documentation for
// how the refresh knobs combine.
const (
	// DefaultFetchTimeout bounds one shared fetch (TokenRequest plus STS),
	// whoever is waiting for it.
	DefaultFetchTimeout = 30 * time.Second
	// DefaultSafetyMargin is how close to expiry credentials stop being
	// served. Java v2 treats credentials within a minute of expiry as stale
	// and blocks to refresh them; two minutes keeps anything we hand out
	// usable by every SDK for at least a request or two.
	DefaultSafetyMargin = 2 * time.Minute
	// DefaultRefreshFraction refreshes at two thirds of the credentials'
	// lifetime: for one-hour credentials that is where RefreshBefore puts it
	// too. Refreshing at half, as podcreds first did, made its STS rate on a
	// 5000-node cluster 1.7× IRSA's (bench/model) for no client's benefit.
	DefaultRefreshFraction = 2.0 / 3
	// DefaultRefreshJitter moves each refresh earlier by up to 10 % of the
	// lifetime, so entries obtained together do not refresh together.
	DefaultRefreshJitter = 0.1
	// DefaultRefreshBefore is the latest point of a refresh: before the
	// credentials have less than 20 minutes left, safely ahead of botocore's
	// 15-minute advisory refresh.
	DefaultRefreshBefore = 20 * time.Minute
	// DefaultInitialBackoff is the first retry delay after a retriable
	// failure (before jitter).
	DefaultInitialBackoff = time.Second
	// DefaultMaxBackoff caps the retry delay (before jitter).
	DefaultMaxBackoff = 2 * time.Minute
	// DefaultFinalErrorTTL is how long a final failure is answered from the
	// cache before a request may try again.
	DefaultFinalErrorTTL = 30 * time.Second
	// DefaultMaxConcurrentRefreshes bounds background refreshes in flight.
	DefaultMaxConcurrentRefreshes = 8
)

// Options configure a Cache. The zero value of every field means its default.
type Options struct {
	// Clock schedules refreshes and tells the time. Default: the real clock.
	Clock clock.WithDelayedExecution
	// Logger receives the cache's logs, under the name "cache". Default: none.
	Logger *zap.Logger
	// Metrics receives the cache's metrics. Nil is allowed: they are then
	// recorded on a private registry that nobody reads.
	Metrics *metrics.Metrics

	// FetchTimeout bounds each fetch. Default DefaultFetchTimeout.
	FetchTimeout time.Duration
	// MaxWait bounds how long Get waits for a fetch before answering a
	// retriable "pending" error; the fetch continues and lands in the cache
	// for the next request. SDKs give up after about a second, so waiting
	// longer only turns a retry into a timeout. Zero: no bound (the
	// caller's context still applies). Uses the real clock.
	MaxWait time.Duration
	// SafetyMargin: credentials with this little time left, or less, are
	// never served. Default DefaultSafetyMargin.
	SafetyMargin time.Duration
	// RefreshFraction of the lifetime after which credentials are
	// refreshed, in (0, 1). Default DefaultRefreshFraction.
	RefreshFraction float64
	// RefreshJitter is the largest fraction of the lifetime by which a
	// refresh is moved earlier, in [0, RefreshFraction/2]. Default
	// DefaultRefreshJitter; to disable jitter, supply a Rand returning 0.
	RefreshJitter float64
	// RefreshBefore: a refresh is scheduled no later than when this much
	// lifetime is left. Default DefaultRefreshBefore.
	RefreshBefore time.Duration
	// InitialBackoff and MaxBackoff shape retries after retriable failures.
	// Defaults DefaultInitialBackoff and DefaultMaxBackoff.
	InitialBackoff, MaxBackoff time.Duration
	// FinalErrorTTL is how long a final failure is remembered. Default
	// DefaultFinalErrorTTL.
	FinalErrorTTL time.Duration
	// MaxConcurrentRefreshes bounds background refreshes running at once;
	// prefetches and request-path fetches are not limited. Default
	// DefaultMaxConcurrentRefreshes.
	MaxConcurrentRefreshes int
	// Rand returns numbers in [0, 1) for jitter. The cache calls it only
	// while holding its lock, so it need not be safe for concurrent use.
	// Default: math/rand/v2.Float64.
	Rand func() float64
}

// withDefaults returns o with every unset or out-of-range field replaced by
// its default.
func (o Options) withDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(prometheus.NewRegistry())
	}
	durations := []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&o.FetchTimeout, DefaultFetchTimeout},
		{&o.SafetyMargin, DefaultSafetyMargin},
		{&o.RefreshBefore, DefaultRefreshBefore},
		{&o.InitialBackoff, DefaultInitialBackoff},
		{&o.MaxBackoff, DefaultMaxBackoff},
		{&o.FinalErrorTTL, DefaultFinalErrorTTL},
	}
	for _, d := range durations {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.RefreshFraction <= 0 || o.RefreshFraction >= 1 {
		o.RefreshFraction = DefaultRefreshFraction
	}
	if o.RefreshJitter <= 0 {
		o.RefreshJitter = DefaultRefreshJitter
	}
	o.RefreshJitter = min(o.RefreshJitter, o.RefreshFraction/2)
	if o.MaxConcurrentRefreshes <= 0 {
		o.MaxConcurrentRefreshes = DefaultMaxConcurrentRefreshes
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return o
}
