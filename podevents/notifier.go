package podevents

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
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

// The node's budget of Events handed to tools/events: budgetBurst at once,
// refilled at budgetRate a second. tools/events gives every Event its own
// goroutine, which retries a write that does not reach the API server up to
// 12 times 10 s apart and has no bound of its own; the gate admits one Event
// per pod and reason per interval, and the budget bounds what pods that come
// and go (new UIDs) can add on top, so an unreachable API server parks at
// most about 530 of those goroutines (256, plus one a second for the 4.5 min
// an Event is retried at most). Past it Events are dropped (counted), never
// waited for.
const (
	budgetBurst = 256
	budgetRate  = 1
)

// Options configures a Notifier. Client is required.
type Options struct {
	// Client writes the Events (NewClient); Instance is the reporting
	// instance written on them (the node's name).
	Client   eventsv1client.EventsV1Interface
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
// atomic load while no pod is failing. Failed never waits on the API
// server: what passes the gate and the budget is handed to client-go's
// tools/events recorder, which writes from its own goroutines.
type Notifier struct {
	sink     *countingSink
	interval time.Duration
	after    time.Duration
	clock    clock.PassiveClock
	m        *metrics.Metrics
	budget   *rate.Limiter

	failing atomic.Int64 // len(outage), read without mu
	// rec is the recorder while Run runs, nil before and after.
	rec atomic.Pointer[recorder]

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

// recorder boxes tools/events' recorder for rec.
type recorder struct{ events.EventRecorder }

// New returns a Notifier writing through o.Client once Run runs.
func New(o Options) *Notifier {
	return newNotifier(o, &events.EventSinkImpl{Interface: o.Client})
}

// newNotifier is New over any sink (tests use their own).
func newNotifier(o Options, sink events.EventSink) *Notifier {
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
	s := &countingSink{next: sink, instance: o.Instance, log: o.Logger.Named("events"), m: o.Metrics}
	return &Notifier{sink: s, interval: o.Interval, after: o.UnavailableAfter, clock: o.Clock, m: o.Metrics,
		budget: rate.NewLimiter(budgetRate, budgetBurst),
		last:   map[gateKey]time.Time{}, outage: map[types.UID]outage{}, sweepAt: 256}
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

// record hands an Event that passed the gate to tools/events, if Run runs
// and the budget allows; otherwise it is dropped.
func (n *Notifier) record(pod cache.PodRef, reason, msg string) {
	r := n.rec.Load()
	if r == nil || !n.budget.AllowN(n.clock.Now(), 1) {
		n.count(reason, "dropped")
		return
	}
	// A reference is recorded as it is (no scheme lookup), and it is all
	// an Event needs of the pod. The note goes in as an argument, never as
	// the format: it quotes annotations and STS messages, which may hold %.
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	r.Eventf(ref, nil, corev1.EventTypeWarning, reason, Action, "%s", note(msg, ""))
}

func (n *Notifier) count(reason, result string) {
	if n.m != nil {
		n.m.Events.WithLabelValues(reason, result).Inc()
	}
}
