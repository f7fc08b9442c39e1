package podevents

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestMain(m *testing.M) {
	// klog's flush daemon runs for the life of the process.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

// write is one call tools/events made of the sink.
type write struct {
	verb  string // create or patch
	event *eventsv1.Event
	count int32 // the series count a patch sets
}

// fakeSink stands for the API server behind tools/events: it keeps every
// write and answers with fail, if set.
type fakeSink struct {
	mu     sync.Mutex
	writes []write
	fail   func(verb string) error
	seen   chan struct{}
}

func newFakeSink() *fakeSink { return &fakeSink{seen: make(chan struct{}, 1000)} }

func (f *fakeSink) do(verb string, ev *eventsv1.Event, count int32) error {
	f.mu.Lock()
	f.writes = append(f.writes, write{verb: verb, event: ev.DeepCopy(), count: count})
	fail := f.fail
	f.mu.Unlock()
	f.seen <- struct{}{}
	if fail != nil {
		return fail(verb)
	}
	return nil
}

func (f *fakeSink) Create(_ context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	return ev, f.do("create", ev, 0)
}

func (f *fakeSink) Update(_ context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	return ev, f.do("update", ev, 0)
}

func (f *fakeSink) Patch(_ context.Context, ev *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	var p struct {
		Series struct{ Count int32 } `json:"series"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, err
	}
	return ev, f.do("patch", ev, p.Series.Count)
}

// await waits for n more writes, at most 10 s.
func (f *fakeSink) await(t *testing.T, n int) []write {
	t.Helper()
	for range n {
		select {
		case <-f.seen:
		case <-time.After(10 * time.Second):
			t.Fatalf("tools/events did not write within 10s; writes so far: %d", len(f.all()))
		}
	}
	return f.all()
}

// quiet reports whether no write arrives within d. tools/events writes
// from goroutines, so the absence of a write can only be waited for.
func (f *fakeSink) quiet(d time.Duration) bool {
	select {
	case <-f.seen:
		return false
	case <-time.After(d):
		return true
	}
}

func (f *fakeSink) all() []write {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]write(nil), f.writes...)
}

// awaitCount waits up to 10 s for podcreds_events_total{reason,result} to
// reach want: the sink counts a write after the fake has answered it.
func awaitCount(t *testing.T, n *Notifier, reason, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := testutil.ToFloat64(n.m.Events.WithLabelValues(reason, result))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("podcreds_events_total{reason=%q,result=%q} is %v, want %v", reason, result, got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// running starts a Notifier over tools/events and sink, and stops it when
// the test ends.
func running(t *testing.T, sink *fakeSink, instance string) (*Notifier, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	n := newNotifier(Options{Instance: instance, Interval: 10 * time.Minute, UnavailableAfter: time.Minute, Clock: clk, Metrics: newMetrics()}, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for n.rec.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	return n, clk
}

func TestAnEventOnThePodThatSaysWhoReportsIt(t *testing.T) {
	sink := newFakeSink()
	n, _ := running(t, sink, "node-1")
	n.Failed(podA, noRole)
	w := sink.await(t, 1)
	ev := w[0].event
	if w[0].verb != "create" || ev.Namespace != "shop" || ev.Regarding.Kind != "Pod" || ev.Regarding.APIVersion != "v1" ||
		ev.Regarding.Namespace != "shop" || ev.Regarding.Name != "a" || ev.Regarding.UID != "uid-a" ||
		ev.Type != "Warning" || ev.Action != Action || ev.Reason != "NoRole" || ev.ReportingController != ReportingController ||
		ev.ReportingInstance != "node-1" || !strings.HasPrefix(ev.Name, "a.") || ev.Series != nil ||
		!strings.Contains(ev.Note, "Annotate the ServiceAccount") {
		t.Fatalf("%s %+v", w[0].verb, ev)
	}
	awaitCount(t, n, "NoRole", "emitted", 1)
}

// TestARepeatIsTheFirstEventsSeries asserts what tools/events does with an
// Event the gate lets through again: the second makes the first Event a
// series of 2 (a patch); the third and later only count in tools/events'
// memory, written when the series is refreshed (30 min) or ends (6 to 12
// min without a repeat).
func TestARepeatIsTheFirstEventsSeries(t *testing.T) {
	sink := newFakeSink()
	n, clk := running(t, sink, "node-1")
	n.Failed(podA, noRole)
	first := sink.await(t, 1)[0].event
	clk.Step(10 * time.Minute)
	n.Failed(podA, noRole)
	w := sink.await(t, 1)
	if len(w) != 2 || w[1].verb != "patch" || w[1].event.Name != first.Name || w[1].count != 2 {
		t.Fatalf("writes %+v, want a patch of %s's series to 2", w, first.Name)
	}
	clk.Step(10 * time.Minute)
	n.Failed(podA, noRole)
	if !sink.quiet(time.Second) {
		t.Fatalf("writes %+v: tools/events wrote a third repeat at once; README says it waits for the series to end", sink.all())
	}
	awaitCount(t, n, "NoRole", "emitted", 2)
}

func TestAnExpiredEventStartsANewOne(t *testing.T) {
	sink := newFakeSink()
	n, clk := running(t, sink, "node-1")
	n.Failed(podA, noRole)
	sink.await(t, 1)
	sink.mu.Lock()
	sink.fail = func(verb string) error {
		if verb == "patch" {
			return apierrors.NewNotFound(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "a.1")
		}
		return nil
	}
	sink.mu.Unlock()
	clk.Step(10 * time.Minute)
	n.Failed(podA, noRole)
	w := sink.await(t, 2)
	if len(w) != 3 || w[1].verb != "patch" || w[2].verb != "create" {
		t.Fatalf("writes %+v, want a create after the patch found no Event", w)
	}
	// A missing series is no failure.
	awaitCount(t, n, "NoRole", "emitted", 2)
	if f := testutil.ToFloat64(n.m.Events.WithLabelValues("NoRole", "failed")); f != 0 {
		t.Fatalf("%v writes counted as failed, want 0: the patch found no Event, and the create that followed succeeded", f)
	}
}

func TestARefusedWriteIsCountedAsFailed(t *testing.T) {
	sink := newFakeSink()
	sink.fail = func(string) error {
		return apierrors.NewForbidden(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "", errors.New("no grant"))
	}
	n, _ := running(t, sink, "node-1")
	n.Failed(podA, noRole)
	sink.await(t, 1)
	if !sink.quiet(200 * time.Millisecond) {
		t.Fatalf("writes %+v: tools/events retried a refused write", sink.all())
	}
	awaitCount(t, n, "NoRole", "failed", 1)
}

func TestALongNodeNameIsCutToTheReportingInstanceLimit(t *testing.T) {
	sink := newFakeSink()
	n, _ := running(t, sink, strings.Repeat("n", 253))
	n.Failed(podA, noRole)
	if got := len(sink.await(t, 1)[0].event.ReportingInstance); got != maxInstance {
		t.Fatalf("reportingInstance of %d characters, want %d", got, maxInstance)
	}
}

func TestAfterRunEventsAreDropped(t *testing.T) {
	sink := newFakeSink()
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	n := newNotifier(Options{Instance: "node-1", Clock: clk, Metrics: newMetrics()}, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	for n.rec.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	n.Failed(podA, noRole)
	if got := testutil.ToFloat64(n.m.Events.WithLabelValues("NoRole", "dropped")); got != 1 || len(sink.all()) != 0 {
		t.Fatalf("dropped %v, writes %d: an Event after Run must be dropped and counted", got, len(sink.all()))
	}
}
