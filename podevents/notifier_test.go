package podevents

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/kube"
)

type recorded struct{ uid, reason, note string }

// fakeEvents keeps what it is asked to write; n, once set, is drained
// first, so all returns what the Notifier's writer would have written.
type fakeEvents struct {
	mu      sync.Mutex
	n       *Notifier
	events  []recorded
	created []*kube.Event
	patches []kube.EventSeries
	missing bool // answer patches NotFound
}

func (f *fakeEvents) CreateEvent(_ context.Context, ev *kube.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, ev)
	f.events = append(f.events, recorded{uid: string(ev.Regarding.UID), reason: ev.Reason, note: ev.Note})
	return nil
}

func (f *fakeEvents) PatchEventSeries(_ context.Context, _, _ string, s kube.EventSeries) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing {
		return apierrors.NewNotFound(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "x")
	}
	f.patches = append(f.patches, s)
	return nil
}

func (f *fakeEvents) all() []recorded {
	for {
		select {
		case p := <-f.n.w.queue:
			f.n.w.write(context.Background(), p)
			continue
		default:
		}
		break
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.events...)
}

var (
	podA = cache.PodRef{Namespace: "shop", Name: "a", UID: "uid-a"}
	podB = cache.PodRef{Namespace: "shop", Name: "b", UID: "uid-b"}

	noRole   = failure.Final(http.StatusNotFound, "NoRole", "serviceaccount shop/app has no eks.amazonaws.com/role-arn annotation", nil)
	notFound = failure.Final(http.StatusNotFound, "PodNotFound", "not a pod", nil)
	down     = failure.Retriable("UpstreamUnavailable", "STS is unavailable", 0, nil)
)

func newTest() (*Notifier, *fakeEvents, *clocktesting.FakeClock) {
	rec := &fakeEvents{}
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	rec.n = New(Options{Events: rec, Instance: "node-1", Interval: 10 * time.Minute, UnavailableAfter: time.Minute, Clock: clk})
	return rec.n, rec, clk
}

func TestABurstOfRefusalsIsOneEventPerPodAndReasonPerInterval(t *testing.T) {
	n, rec, clk := newTest()
	for range 1000 {
		n.Failed(podA, noRole)
		n.Failed(podB, noRole)
	}
	if got := len(rec.all()); got != 2 {
		t.Fatalf("1000 refusals of two pods made %d Events, want 2", got)
	}
	clk.Step(9 * time.Minute)
	n.Failed(podA, noRole)
	if got := len(rec.all()); got != 2 {
		t.Fatalf("a refusal within the interval made an Event (%d)", got)
	}
	clk.Step(time.Minute)
	n.Failed(podA, noRole)
	if got := len(rec.all()); got != 2 || len(rec.patches) != 1 || rec.patches[0].Count != 2 {
		t.Fatalf("a refusal after the interval made %d Events and series %+v, want the first Event's series counting 2", got, rec.patches)
	}
}

func TestAnEventOnThePodThatSaysWhoReportsIt(t *testing.T) {
	n, rec, _ := newTest()
	n.Failed(podA, noRole)
	rec.all()
	ev := rec.created[0]
	if ev.Namespace != "shop" || ev.Regarding != (kube.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "a", UID: "uid-a"}) ||
		ev.Type != "Warning" || ev.Action != Action || ev.ReportingController != ReportingController || ev.ReportingInstance != "node-1" ||
		!strings.HasPrefix(ev.Name, "a.") || ev.Series != nil {
		t.Fatalf("event %+v", ev)
	}
}

func TestAnExpiredEventStartsANewOne(t *testing.T) {
	n, rec, clk := newTest()
	n.Failed(podA, noRole)
	rec.all()
	rec.missing = true
	clk.Step(10 * time.Minute)
	n.Failed(podA, noRole)
	if got := len(rec.all()); got != 2 {
		t.Fatalf("%d Events, want a new one when the series' Event is gone", got)
	}
}

func TestAFullQueueDropsRatherThanWaits(t *testing.T) {
	n, _, _ := newTest()
	for i := range queueLen + 10 {
		n.Failed(cache.PodRef{Namespace: "ns", Name: "p", UID: typesUID(i)}, noRole)
	}
	if len(n.w.queue) != queueLen {
		t.Fatalf("queue holds %d, want %d", len(n.w.queue), queueLen)
	}
}

func TestEventNamesStayValid(t *testing.T) {
	name := eventName(strings.Repeat("a", 253), time.Unix(1_800_000_000, 0))
	if len(name) > 253 || !strings.Contains(name, ".") {
		t.Fatalf("name %q (%d)", name, len(name))
	}
}

func TestEventsSayWhatToFix(t *testing.T) {
	n, rec, _ := newTest()
	n.Failed(podA, noRole)
	ev := rec.all()
	if len(ev) != 1 || ev[0].reason != "NoRole" || !strings.Contains(ev[0].note, "has no eks.amazonaws.com/role-arn") ||
		!strings.Contains(ev[0].note, "Annotate the ServiceAccount") {
		t.Fatalf("events %+v, want one NoRole naming the missing annotation and the fix", ev)
	}
}

func TestOnlyRefusalsAboutThePodBecomeEvents(t *testing.T) {
	n, rec, _ := newTest()
	n.Failed(podA, notFound)
	n.Failed(podA, failure.TooManyRequests(time.Second))
	n.Failed(cache.PodRef{}, noRole)
	n.Failed(podA, nil)
	if ev := rec.all(); len(ev) != 0 {
		t.Fatalf("events %+v, want none", ev)
	}
}

func TestRetriableFailuresBecomeAnEventOnlyAfterTheThreshold(t *testing.T) {
	n, rec, clk := newTest()
	n.Failed(podA, down)
	clk.Step(59 * time.Second)
	n.Failed(podA, down)
	if ev := rec.all(); len(ev) != 0 {
		t.Fatalf("events %+v before the threshold, want none", ev)
	}
	clk.Step(time.Second)
	for range 100 {
		n.Failed(podA, down)
	}
	ev := rec.all()
	if len(ev) != 1 || ev[0].reason != CredentialsUnavailable || !strings.Contains(ev[0].note, "UpstreamUnavailable") {
		t.Fatalf("events %+v, want one CredentialsUnavailable naming the code", ev)
	}
}

func TestASuccessEndsTheOutage(t *testing.T) {
	n, rec, clk := newTest()
	n.Failed(podA, down)
	clk.Step(50 * time.Second)
	n.Served(podA.UID)
	clk.Step(20 * time.Second)
	n.Failed(podA, down)
	if ev := rec.all(); len(ev) != 0 {
		t.Fatalf("events %+v: the failures around a success are two short outages, not one long one", ev)
	}
}

func TestAPodThatStoppedAskingStartsAFreshOutage(t *testing.T) {
	n, rec, clk := newTest()
	n.Failed(podA, down)
	clk.Step(time.Hour)
	n.Failed(podA, down)
	if ev := rec.all(); len(ev) != 0 {
		t.Fatalf("events %+v: one failure an hour ago and one now are not an hour without credentials", ev)
	}
}

func TestCancelledRequestsAreNoOutage(t *testing.T) {
	n, rec, clk := newTest()
	cancelled := failure.Retriable("RequestCancelled", "request ended", 0, nil)
	n.Failed(podA, cancelled)
	clk.Step(time.Hour)
	n.Failed(podA, cancelled)
	if ev := rec.all(); len(ev) != 0 {
		t.Fatalf("events %+v, want none", ev)
	}
}

func TestSweepForgetsGonePods(t *testing.T) {
	n, _, clk := newTest()
	for i := range 1000 {
		n.Failed(cache.PodRef{Namespace: "ns", Name: "p", UID: typesUID(i)}, noRole)
	}
	clk.Step(11 * time.Minute)
	for i := range 300 {
		n.Failed(cache.PodRef{Namespace: "ns", Name: "q", UID: typesUID(10000 + i)}, noRole)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.last) > 600 {
		t.Fatalf("%d gates kept after the first thousand pods' interval ended, want at most 600", len(n.last))
	}
}

func TestNoteIsCutToTheAPIServersLimit(t *testing.T) {
	long := strings.Repeat("é", 2000)
	got := note(long, "fix it")
	if len(got) > maxNote || !strings.HasSuffix(got, "…") || !utf8Valid(got) {
		t.Fatalf("note of %d bytes (valid UTF-8: %v), want at most %d ending in …", len(got), utf8Valid(got), maxNote)
	}
}

func TestANilNotifierDoesNothing(t *testing.T) {
	var n *Notifier
	n.Failed(podA, noRole)
	n.Served(podA.UID)
}

func TestALongNodeNameIsCutToTheReportingInstanceLimit(t *testing.T) {
	rec := &fakeEvents{}
	rec.n = New(Options{Events: rec, Instance: strings.Repeat("n", 253)})
	rec.n.Failed(podA, noRole)
	rec.all()
	if got := len(rec.created[0].ReportingInstance); got != maxInstance {
		t.Fatalf("reportingInstance of %d characters, want %d", got, maxInstance)
	}
}
