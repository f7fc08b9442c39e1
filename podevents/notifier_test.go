package podevents

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

// The gate's tests hand Events to fakeRecorder, which keeps them at once;
// recorder_test.go runs tools/events itself.

type recorded struct{ uid, reason, note string }

// fakeRecorder stands for tools/events' recorder: it keeps what it is
// handed, formatted as tools/events formats it.
type fakeRecorder struct {
	mu     sync.Mutex
	events []recorded
	refs   []*corev1.ObjectReference
	types  []string
}

func (f *fakeRecorder) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := regarding.(*corev1.ObjectReference)
	f.refs = append(f.refs, ref)
	f.types = append(f.types, eventtype+"/"+action)
	f.events = append(f.events, recorded{uid: string(ref.UID), reason: reason, note: fmt.Sprintf(note, args...)})
}

func (f *fakeRecorder) all() []recorded {
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

func newMetrics() *metrics.Metrics { return metrics.New(prometheus.NewRegistry()) }

func newTest() (*Notifier, *fakeRecorder, *clocktesting.FakeClock) {
	rec := &fakeRecorder{}
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	n := newNotifier(Options{Instance: "node-1", Interval: 10 * time.Minute, UnavailableAfter: time.Minute, Clock: clk, Metrics: newMetrics()}, nil)
	n.rec.Store(&recorder{rec})
	return n, rec, clk
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
	if got := testutil.ToFloat64(n.m.Events.WithLabelValues("NoRole", "suppressed")); got != 1998 {
		t.Fatalf("%v refusals counted as suppressed, want 1998", got)
	}
	clk.Step(9 * time.Minute)
	n.Failed(podA, noRole)
	if got := len(rec.all()); got != 2 {
		t.Fatalf("a refusal within the interval made an Event (%d)", got)
	}
	clk.Step(time.Minute)
	n.Failed(podA, noRole)
	if got := rec.all(); len(got) != 3 || got[2].uid != "uid-a" {
		t.Fatalf("Events %+v: a refusal after the interval must be handed on (tools/events makes it the first one's series)", got)
	}
}

func TestAnEventRegardsThePodAsAWarning(t *testing.T) {
	n, rec, _ := newTest()
	n.Failed(podA, noRole)
	if len(rec.refs) != 1 || *rec.refs[0] != (corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "shop", Name: "a", UID: "uid-a"}) ||
		rec.types[0] != "Warning/"+Action {
		t.Fatalf("regarding %+v, type/action %v", rec.refs, rec.types)
	}
}

func TestASpentBudgetDropsRatherThanWaits(t *testing.T) {
	n, rec, clk := newTest()
	for i := range budgetBurst + 10 {
		n.Failed(cache.PodRef{Namespace: "ns", Name: "p", UID: typesUID(i)}, noRole)
	}
	if got := len(rec.all()); got != budgetBurst {
		t.Fatalf("%d Events handed on, want the budget's %d", got, budgetBurst)
	}
	if got := testutil.ToFloat64(n.m.Events.WithLabelValues("NoRole", "dropped")); got != 10 {
		t.Fatalf("%v counted as dropped, want 10", got)
	}
	clk.Step(time.Second)
	n.Failed(cache.PodRef{Namespace: "ns", Name: "p", UID: typesUID(100000)}, noRole)
	if got := len(rec.all()); got != budgetBurst+1 {
		t.Fatalf("%d Events handed on a second later, want one more than %d", got, budgetBurst)
	}
}

func TestEventsWhileNotRunningAreDropped(t *testing.T) {
	n, rec, _ := newTest()
	n.rec.Store(nil)
	n.Failed(podA, noRole)
	if got := testutil.ToFloat64(n.m.Events.WithLabelValues("NoRole", "dropped")); got != 1 || len(rec.all()) != 0 {
		t.Fatalf("dropped %v, handed on %d: an Event before Run must be dropped and counted", got, len(rec.all()))
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

func TestANoteIsNeverAFormat(t *testing.T) {
	n, rec, _ := newTest()
	n.Failed(podA, failure.Final(http.StatusForbidden, "InvalidRole", `role "100%d%s" is not an ARN`, nil))
	if ev := rec.all(); len(ev) != 1 || !strings.Contains(ev[0].note, `"100%d%s"`) {
		t.Fatalf("events %+v, want the message's %% verbs kept as written", ev)
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
	n.Run(t.Context())
}
