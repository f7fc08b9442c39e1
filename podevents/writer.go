package podevents

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
)

// ReportingController names podcreds' agent as the Events' source.
const ReportingController = "podcreds.io/agent"

// queueLen bounds the Events waiting to be written. The gate lets through
// one per pod and reason per interval, so it fills only when the API server
// is unreachable; then new Events are dropped (and counted), never waited
// for: a request does not wait on the API server to be refused.
const queueLen = 256

// writeTimeout bounds one write to the API server.
const writeTimeout = 10 * time.Second

// pending is an Event the gate let through.
type pending struct {
	pod    cache.PodRef
	reason string
	note   string
	at     time.Time
}

// series is an Event already written for one pod and reason: a repeat within
// seriesFor of the last one patches its series (as client-go's tools/events
// does for isomorphic events) instead of adding an Event.
type series struct {
	namespace, name string
	count           int32
	last            time.Time
}

// writer writes Events from one goroutine, so series needs no lock.
type writer struct {
	api       kube.Events
	instance  string
	seriesFor time.Duration
	clock     clock.PassiveClock
	log       *zap.Logger
	m         *metrics.Metrics

	queue  chan pending
	series map[gateKey]*series
}

func newWriter(api kube.Events, instance string, interval time.Duration, clk clock.PassiveClock, log *zap.Logger, m *metrics.Metrics) *writer {
	return &writer{api: api, instance: instance, seriesFor: 2 * interval, clock: clk, log: log, m: m,
		queue: make(chan pending, queueLen), series: map[gateKey]*series{}}
}

func (w *writer) count(reason, result string) {
	if w.m != nil {
		w.m.Events.WithLabelValues(reason, result).Inc()
	}
}

func (w *writer) enqueue(p pending) {
	select {
	case w.queue <- p:
	default:
		w.count(p.reason, "dropped")
	}
}

func (w *writer) run(ctx context.Context) {
	sweep := time.NewTicker(w.seriesFor)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			now := w.clock.Now()
			for k, s := range w.series {
				if now.Sub(s.last) > w.seriesFor {
					delete(w.series, k)
				}
			}
		case p := <-w.queue:
			w.write(ctx, p)
		}
	}
}

// write creates p's Event, or adds to the series of the one written for the
// same pod and reason shortly before.
func (w *writer) write(ctx context.Context, p pending) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	k := gateKey{p.pod.UID, p.reason}
	if s, ok := w.series[k]; ok && p.at.Sub(s.last) <= w.seriesFor {
		s.count++
		s.last = p.at
		err := w.api.PatchEventSeries(ctx, s.namespace, s.name, kube.EventSeries{Count: s.count, LastObservedTime: metav1.NewMicroTime(p.at)})
		if err == nil {
			w.count(p.reason, "emitted")
			return
		}
		if !apierrors.IsNotFound(err) {
			w.failed(p, err)
			return
		}
		// The Event expired (the API server keeps them an hour): start anew.
	}
	ev := &kube.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.pod.Namespace,
			// As client-go names them: the object's name and a timestamp.
			Name: eventName(p.pod.Name, p.at),
		},
		EventTime:           metav1.NewMicroTime(p.at),
		ReportingController: ReportingController,
		ReportingInstance:   w.instance,
		Action:              Action,
		Reason:              p.reason,
		Regarding:           kube.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.pod.Namespace, Name: p.pod.Name, UID: p.pod.UID},
		Note:                p.note,
		Type:                "Warning",
	}
	if err := w.api.CreateEvent(ctx, ev); err != nil {
		w.failed(p, err)
		return
	}
	w.series[k] = &series{namespace: ev.Namespace, name: ev.Name, count: 1, last: p.at}
	w.count(p.reason, "emitted")
}

func (w *writer) failed(p pending, err error) {
	w.count(p.reason, "failed")
	w.log.Warn("cannot write an event", zap.String("pod", p.pod.Namespace+"/"+p.pod.Name),
		zap.String("reason", p.reason), zap.Error(err))
}

// eventName is name.<nanoseconds in hex>, with name cut so that the whole
// stays a valid object name (253 characters).
func eventName(name string, at time.Time) string {
	suffix := "." + strconv.FormatInt(at.UnixNano(), 16)
	if len(name)+len(suffix) > 253 {
		name = name[:253-len(suffix)]
	}
	return name + suffix
}
