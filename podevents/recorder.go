package podevents

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"

	"github.com/podcreds/podcreds/metrics"
)

// ReportingController names podcreds' agent as the Events' source.
const ReportingController = "podcreds.io/agent"

// writeTimeout bounds one write to the API server: tools/events writes
// under Run's context, which has no deadline.
const writeTimeout = 10 * time.Second

// NewClient returns the typed events.k8s.io/v1 client for cfg, keeping its
// QPS, Burst, UserAgent and credentials (so Events share the agent's
// client-side budget settings) and bounding each write to writeTimeout.
// Only create and patch are ever sent: what the agent's RBAC grants.
func NewClient(cfg *rest.Config) (eventsv1client.EventsV1Interface, error) {
	c := rest.CopyConfig(cfg)
	if c.Timeout == 0 || c.Timeout > writeTimeout {
		c.Timeout = writeTimeout
	}
	client, err := eventsv1client.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes events client: %w", err)
	}
	return client, nil
}

// Run records the Events the Notifier lets through until ctx ends, through
// one tools/events broadcaster: it builds each events.k8s.io/v1 Event,
// keeps a repeat of an Event (same pod, reason, type and source) as a series
// of the first, and writes from its own goroutines, retrying writes that do
// not reach the API server. When ctx ends, writes in flight are abandoned
// and later Events are dropped. A nil Notifier returns at once.
func (n *Notifier) Run(ctx context.Context) {
	if n == nil {
		return
	}
	// tools/events logs through klog, outside the agent's logger; the sink
	// logs every failed write itself, with the pod and the reason.
	ctx = klog.NewContext(ctx, logr.Discard())
	b := events.NewBroadcaster(n.sink)
	defer b.Shutdown()
	if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
		n.sink.log.Error("cannot start recording events", zap.Error(err))
		return
	}
	// The scheme is never consulted: the Notifier records references.
	r := b.NewRecorder(runtime.NewScheme(), ReportingController).WithLogger(logr.Discard())
	n.rec.Store(&recorder{r})
	<-ctx.Done()
	n.rec.Store(nil)
}

// countingSink is what tools/events writes through: it counts each write by
// the Event's reason, logs failures, and writes the node's name as the
// reporting instance (tools/events would write
// "<reportingController>-<hostname>", with no option to choose).
type countingSink struct {
	next     events.EventSink
	instance string
	log      *zap.Logger
	m        *metrics.Metrics
}

func (s *countingSink) Create(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	ev = ev.DeepCopy() // the broadcaster may hand over the Event it keeps
	ev.ReportingInstance = s.instance
	out, err := s.next.Create(ctx, ev)
	// A series whose first Event is being created by another goroutine: the
	// broadcaster retries, so this is no failure.
	s.observe(ev, err, ev.Series != nil && apierrors.IsAlreadyExists(err))
	return out, err
}

func (s *countingSink) Update(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	out, err := s.next.Update(ctx, ev)
	s.observe(ev, err, false)
	return out, err
}

func (s *countingSink) Patch(ctx context.Context, ev *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	out, err := s.next.Patch(ctx, ev, data)
	// The Event expired (the API server keeps Events an hour): the
	// broadcaster creates it anew, and that write is counted.
	s.observe(ev, err, apierrors.IsNotFound(err))
	return out, err
}

func (s *countingSink) observe(ev *eventsv1.Event, err error, retried bool) {
	switch {
	case err == nil:
		s.count(ev.Reason, "emitted")
	case retried:
	default:
		s.count(ev.Reason, "failed")
		s.log.Warn("cannot write an event", zap.String("pod", ev.Regarding.Namespace+"/"+ev.Regarding.Name),
			zap.String("reason", ev.Reason), zap.Error(err))
	}
}

func (s *countingSink) count(reason, result string) {
	if s.m != nil {
		s.m.Events.WithLabelValues(reason, result).Inc()
	}
}
