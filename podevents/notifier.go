package podevents

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
)

// Action is the action of every Event the agent records.
const Action = "GetCredentials"

// Defaults of Options.
const (
	DefaultInterval         = 10 * time.Minute
	DefaultUnavailableAfter = 2 * time.Minute
)

// maxInstance is the API server's limit on an Event's reportingInstance.
const maxInstance = 128

// Options configures a Notifier. Events is required.
type Options struct {
	// Events writes to the API server; Instance is the reporting instance
	// (the node's name).
	Events   kube.Events
	Instance string
	Logger   *zap.Logger // optional
	// Interval is the least time between two Events of one reason on one
	// pod (default DefaultInterval).
	Interval time.Duration
	// UnavailableAfter is how long a pod's requests must have failed with
	// retriable errors, without a success between them, before it gets a
	// CredentialsUnavailable Event (default DefaultUnavailableAfter).
	UnavailableAfter time.Duration
	Clock            clock.PassiveClock
	Metrics          *metrics.Metrics // optional
}

// Notifier turns the outcomes of a pod's credential requests into Events.
// Safe for concurrent use; Served, on every successful request, costs one
// atomic load while no pod is failing.
type Notifier struct {
	w        *writer
	interval time.Duration
	after    time.Duration
	clock    clock.PassiveClock
	m        *metrics.Metrics

	failing atomic.Int64 // len(outage), read without mu

	mu      sync.Mutex
	last    map[gateKey]time.Time // when each pod last got an Event of each reason
	outage  map[types.UID]outage  // pods whose requests fail retriably
	sweepAt int                   // len(last)+len(outage) that triggers the next sweep
}

type gateKey struct {
	uid    types.UID
	reason string
}

// outage is a run of retriable failures of one pod.
type outage struct{ since, last time.Time }

// New returns a Notifier recording through o.Recorder.
func New(o Options) *Notifier {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.UnavailableAfter <= 0 {
		o.UnavailableAfter = DefaultUnavailableAfter
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	// The API server takes at most 128 characters; a node name may have 253.
	if len(o.Instance) > maxInstance {
		o.Instance = o.Instance[:maxInstance]
	}
	w := newWriter(o.Events, o.Instance, o.Interval, o.Clock, o.Logger.Named("events"), o.Metrics)
	return &Notifier{w: w, interval: o.Interval, after: o.UnavailableAfter, clock: o.Clock, m: o.Metrics,
		last: map[gateKey]time.Time{}, outage: map[types.UID]outage{}, sweepAt: 256}
}

// Served records that pod was just served credentials: it ends the pod's
// run of retriable failures, if any.
func (n *Notifier) Served(uid types.UID) {
	if n == nil || n.failing.Load() == 0 {
		return
	}
	n.mu.Lock()
	if _, ok := n.outage[uid]; ok {
		delete(n.outage, uid)
		n.failing.Store(int64(len(n.outage)))
	}
	n.mu.Unlock()
}

// Failed records that pod's request failed with err. A final refusal whose
// code is an Event reason becomes an Event at once; retriable failures
// become a CredentialsUnavailable Event once they have lasted UnavailableAfter.
// Either way at most one Event per pod and reason per Interval.
func (n *Notifier) Failed(pod cache.PodRef, err error) {
	if n == nil || err == nil || pod.UID == "" {
		return
	}
	fe := failure.From(err)
	now := n.clock.Now()
	if fe.Retriable() {
		if notCounted[fe.Code] {
			return
		}
		n.mu.Lock()
		o, ok := n.outage[pod.UID]
		if !ok || now.Sub(o.last) > n.after {
			// A new run: a pod that failed once long ago and then stopped
			// asking has not been without credentials all that time.
			o.since = now
		}
		o.last = now
		n.outage[pod.UID] = o
		n.failing.Store(int64(len(n.outage)))
		lasted := now.Sub(o.since)
		emit := lasted >= n.after && n.passLocked(pod.UID, CredentialsUnavailable, now)
		n.mu.Unlock()
		if emit {
			n.record(pod, CredentialsUnavailable, fmt.Sprintf(
				"No credentials for over %s: %s (%s). The pod is served again as soon as STS answers; check that the node reaches STS, the agent's --sts-rate and its podcreds_sts_requests_total",
				lasted.Truncate(time.Second), fe.Message, fe.Code))
		}
		return
	}
	reason, ok := Reason(fe.Code)
	if !ok {
		return
	}
	n.mu.Lock()
	emit := n.passLocked(pod.UID, reason, now)
	n.mu.Unlock()
	if emit {
		n.record(pod, reason, note(fe.Message, reasons[reason]))
	}
}

// passLocked reports whether pod may get an Event of reason now, and if so
// counts it as given. n.mu must be held.
func (n *Notifier) passLocked(uid types.UID, reason string, now time.Time) bool {
	k := gateKey{uid, reason}
	if t, ok := n.last[k]; ok && now.Sub(t) < n.interval {
		if n.m != nil {
			n.m.Events.WithLabelValues(reason, "suppressed").Inc()
		}
		return false
	}
	n.last[k] = now
	if len(n.last)+len(n.outage) >= n.sweepAt {
		n.sweepLocked(now)
	}
	return true
}

// sweepLocked forgets gates that have opened and runs of failures that
// ended, so pods that are gone cost nothing; it runs when the maps have
// doubled since the last sweep, so its cost per Event stays constant.
func (n *Notifier) sweepLocked(now time.Time) {
	for k, t := range n.last {
		if now.Sub(t) >= n.interval {
			delete(n.last, k)
		}
	}
	for uid, o := range n.outage {
		if now.Sub(o.last) > n.after {
			delete(n.outage, uid)
		}
	}
	n.failing.Store(int64(len(n.outage)))
	n.sweepAt = max(256, 2*(len(n.last)+len(n.outage)))
}

// Run writes the Events the Notifier lets through until ctx ends.
// A nil Notifier returns at once.
func (n *Notifier) Run(ctx context.Context) {
	if n != nil {
		n.w.run(ctx)
	}
}

func (n *Notifier) record(pod cache.PodRef, reason, msg string) {
	n.w.enqueue(pending{pod: pod, reason: reason, note: note(msg, ""), at: n.clock.Now()})
}
