package integration

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus/testutil"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/podevents"
	"github.com/podcreds/podcreds/roles"
	"github.com/podcreds/podcreds/tokenreq"
)

// roleRoutedSTS answers each role as a test scripts it (an error by role
// ARN, first hop or second), and passes every other call to the fake: one
// agent then meets several STS refusals at once, as a cluster does.
type roleRoutedSTS struct {
	*fakests.STS
	fail map[string]error
}

func (s *roleRoutedSTS) AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, o ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	if err := s.fail[aws.ToString(in.RoleArn)]; err != nil {
		return nil, err
	}
	return s.STS.AssumeRoleWithWebIdentity(ctx, in, o...)
}

func (s *roleRoutedSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, o ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	if err := s.fail[aws.ToString(in.RoleArn)]; err != nil {
		return nil, err
	}
	return s.STS.AssumeRole(ctx, in, o...)
}

var _ tokenreq.ChainClient = (*roleRoutedSTS)(nil)

// TestEachEventReasonIsEmittedOnceForABurstOnTheRightPod: every way a pod
// is refused or left without credentials becomes one Event on that pod,
// however many requests fail, with a message that says what is wrong and
// what to fix; pods that are served get none.
func TestEachEventReasonIsEmittedOnceForABurstOnTheRightPod(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	nsObj, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Annotations = map[string]string{roles.AllowedRolesAnnotation: "arn:aws:iam::111111111111:role/pick-*, arn:aws:iam::333333333333:role/*, arn:aws:iam::222222222222:role/data/*"}
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	const (
		app       = "arn:aws:iam::111111111111:role/app"
		denied    = "arn:aws:iam::111111111111:role/denied"
		throttled = "arn:aws:iam::111111111111:role/throttled"
		refused   = "arn:aws:iam::222222222222:role/data/refused"
	)
	routed := &roleRoutedSTS{STS: fakests.New(time.Hour), fail: map[string]error{
		denied:    fakests.AccessDenied,
		throttled: fakests.Throttling,
		refused:   fakests.AccessDenied,
	}}
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: routed, events: true, rateLimit: -1,
		eventUnavailableAfter: time.Second, accounts: []string{"111111111111", "222222222222"}})

	sas := map[string]map[string]string{
		"ok":            {testenv.RoleAnnotation: app},
		"none":          nil,
		"denied":        {testenv.RoleAnnotation: denied},
		"throttled":     {testenv.RoleAnnotation: throttled},
		"chain-denied":  {testenv.RoleAnnotation: app, roles.TargetRoleAnnotation: refused},
		"chain-outside": {testenv.RoleAnnotation: app, roles.TargetRoleAnnotation: "arn:aws:iam::222222222222:role/other"},
		"bad-session":   {testenv.RoleAnnotation: app, roles.SessionNameAnnotation: "x"},
		"chain-account": {testenv.RoleAnnotation: app, roles.TargetRoleAnnotation: "arn:aws:iam::333333333333:role/tagged"},
		"bad-target":    {testenv.RoleAnnotation: app, roles.TargetRoleAnnotation: "data-reader"},
		"bad-external":  {testenv.RoleAnnotation: app, roles.TargetRoleAnnotation: "arn:aws:iam::222222222222:role/data/reader", roles.ExternalIDAnnotation: "x"},
	}
	for name, ann := range sas {
		if _, err := env.CreateServiceAccount(ctx, ns, name, ann); err != nil {
			t.Fatal(err)
		}
	}
	cases := []eventCase{
		{name: "served-1", sa: "ok"},
		{name: "served-2", sa: "ok"},
		{name: "no-role", sa: "none", reason: "NoRole", says: []string{"serviceaccount " + ns + "/none has no eks.amazonaws.com/role-arn", "Annotate the ServiceAccount"}},
		{name: "picks-forbidden", sa: "ok", ann: map[string]string{roles.PodRoleAnnotation: "arn:aws:iam::111111111111:role/admin"},
			reason: "RoleNotAllowed", says: []string{"role/admin", "podcreds.io/allowed-roles"}},
		{name: "picks-other-account", sa: "ok", ann: map[string]string{roles.PodRoleAnnotation: "arn:aws:iam::333333333333:role/x"},
			reason: "AccountNotAllowed", says: []string{"333333333333", "--allowed-accounts"}},
		{name: "sts-denies", sa: "denied", reason: "AccessDenied", says: []string{"STS refused role " + denied, "AccessDenied", "trust policy"}},
		{name: "target-denied", sa: "chain-denied", reason: "TargetRoleDenied", says: []string{refused, "sts:TagSession"}},
		{name: "target-outside", sa: "chain-outside", reason: "TargetRoleNotAllowed", says: []string{"role/other", "podcreds.io/allowed-roles"}},
		{name: "target-other-account", sa: "chain-account", reason: "AccountNotAllowed", says: []string{"role/tagged", "333333333333", "--allowed-accounts"}},
		{name: "bad-target", sa: "bad-target", reason: "InvalidTargetRole", says: []string{roles.TargetRoleAnnotation, "data-reader", "Fix or remove the annotation"}},
		{name: "bad-external", sa: "bad-external", reason: "InvalidExternalID", says: []string{roles.ExternalIDAnnotation}},
		{name: "bad-session", sa: "bad-session", reason: "InvalidSessionName", says: []string{roles.SessionNameAnnotation}},
		{name: "sts-throttles", sa: "throttled", reason: podevents.CredentialsUnavailable, says: []string{"Throttled", "--sts-rate"}},
	}
	uids := map[string]string{}
	for i, c := range cases {
		pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: c.name, ServiceAccount: c.sa, Node: h.node, IP: addr(71, 0, byte(i+1)), Annotations: c.ann})
		if err != nil {
			t.Fatal(err)
		}
		uids[c.name] = string(pod.UID)
	}
	eventually(t, 10*time.Second, "every pod known to the agent", func() bool {
		for i := range cases {
			if h.agent.Pod(types.UID(uids[cases[i].name])) == nil {
				return false
			}
		}
		return true
	})

	// A burst from every pod, lasting past the CredentialsUnavailable
	// threshold: 40 requests each over about 1.5 s.
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() {
			for range 40 {
				r := h.get(addr(71, 0, byte(i+1)))
				if served := r.Status == http.StatusOK; served != (c.reason == "") {
					t.Errorf("pod %s: status %d %v", c.name, r.Status, r.Body)
					return
				}
				time.Sleep(40 * time.Millisecond)
			}
		})
	}
	wg.Wait()

	failing := 0
	for _, c := range cases {
		if c.reason != "" {
			failing++
		}
	}
	reasons := map[string]bool{}
	for _, c := range cases {
		if c.reason != "" {
			reasons[c.reason] = true
		}
	}
	count := func(result string) int {
		n := 0.0
		for r := range reasons {
			n += testutil.ToFloat64(h.metrics.Events.WithLabelValues(r, result))
		}
		return int(n)
	}
	eventually(t, 15*time.Second, "every failing pod's Event written", func() bool { return count("emitted") >= failing })
	h.stop() // nothing more can be written

	list, err := env.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byPod := map[string][]string{}
	for _, ev := range list.Items {
		if ev.Regarding.Kind != "Pod" || ev.ReportingController != podevents.ReportingController {
			continue
		}
		byPod[ev.Regarding.Name] = append(byPod[ev.Regarding.Name], ev.Reason)
		c := findCase(cases, ev.Regarding.Name)
		switch {
		case c == nil || c.reason == "":
			t.Errorf("Event %s %q on pod %s, which was served", ev.Reason, ev.Note, ev.Regarding.Name)
			continue
		case ev.Reason != c.reason:
			t.Errorf("pod %s: Event reason %s, want %s (%q)", c.name, ev.Reason, c.reason, ev.Note)
		case string(ev.Regarding.UID) != uids[c.name] || ev.Regarding.Namespace != ns:
			t.Errorf("pod %s: Event regards %+v, want uid %s", c.name, ev.Regarding, uids[c.name])
		case ev.Series != nil || ev.DeprecatedCount > 1:
			t.Errorf("pod %s: Event has a series %+v: the burst was let through more than once", c.name, ev.Series)
		case ev.Type != "Warning" || ev.Action != podevents.Action || ev.ReportingInstance != h.node:
			t.Errorf("pod %s: type %s action %s instance %s", c.name, ev.Type, ev.Action, ev.ReportingInstance)
		}
		for _, s := range c.says {
			if !strings.Contains(ev.Note, s) {
				t.Errorf("pod %s: note %q does not say %q", c.name, ev.Note, s)
			}
		}
	}
	for _, c := range cases {
		if c.reason != "" && len(byPod[c.name]) != 1 {
			t.Errorf("pod %s: Events %v, want exactly one %s", c.name, byPod[c.name], c.reason)
		}
	}
	if n := count("suppressed"); n < failing {
		t.Errorf("%d requests suppressed by the gate, want at least one per failing pod", n)
	}
	var notes strings.Builder
	for _, ev := range list.Items {
		notes.WriteString(ev.Note + "\n")
	}
	secrets.mu.Lock()
	defer secrets.mu.Unlock()
	for secret, what := range secrets.secrets {
		if strings.Contains(notes.String(), secret) {
			t.Errorf("an Event carries %s", what)
		}
	}
}

// eventCase is a pod, the Event it must get and what its note must say.
type eventCase struct {
	name, sa string
	ann      map[string]string
	reason   string // "" for a pod that is served
	says     []string
}

func findCase(cases []eventCase, name string) *eventCase {
	for i := range cases {
		if cases[i].name == name {
			return &cases[i]
		}
	}
	return nil
}

// podEvents lists the agent's Events on the pod named name in ns.
func podEvents(ctx context.Context, t *testing.T, ns, name string) []eventsv1.Event {
	t.Helper()
	list, err := env.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, ev := range list.Items {
		if ev.Regarding.Kind == "Pod" && ev.Regarding.Name == name && ev.ReportingController == podevents.ReportingController {
			out = append(out, ev)
		}
	}
	return out
}

// seriesCount is an Event's count: 1 without a series.
func seriesCount(ev eventsv1.Event) int32 {
	if ev.Series == nil {
		return 1
	}
	return ev.Series.Count
}

// TestARepeatAfterTheIntervalIsTheFirstEventsSeries asserts what the API
// server holds when a pod is refused again after --event-interval, as
// client-go's tools/events writes it: the second time, the first Event
// becomes a series of 2 (one patch, no new Event); the third and later
// repeats are counted in the agent's memory and written only when the
// series is refreshed (every 30 min) or ends (6 to 12 min without a
// repeat), so until then the API server still says 2.
func TestARepeatAfterTheIntervalIsTheFirstEventsSeries(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for sa, ann := range map[string]map[string]string{"none": nil, "ok": {testenv.RoleAnnotation: env.RoleARN}} {
		if _, err := env.CreateServiceAccount(ctx, ns, sa, ann); err != nil {
			t.Fatal(err)
		}
	}
	const interval = time.Second
	h := startAgent(t, harnessOptions{node: "node-" + ns, events: true, eventInterval: interval, rateLimit: -1})
	ip, servedIP := addr(72, 0, 1), addr(72, 0, 2)
	pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "again", ServiceAccount: "none", Node: h.node, IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	served, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "served", ServiceAccount: "ok", Node: h.node, IP: servedIP})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the pods known to the agent", func() bool {
		return h.agent.Pod(pod.UID) != nil && h.agent.Pod(served.UID) != nil
	})
	emitted := func() int { return int(testutil.ToFloat64(h.metrics.Events.WithLabelValues("NoRole", "emitted"))) }
	refuse := func() {
		t.Helper()
		if r := h.get(ip); r.Status != http.StatusNotFound || r.Body["Code"] != "NoRole" {
			t.Fatalf("answered %d %v, want 404 NoRole", r.Status, r.Body)
		}
	}

	refuse()
	eventually(t, 10*time.Second, "the first Event written", func() bool { return emitted() == 1 })
	first := podEvents(ctx, t, ns, "again")
	if len(first) != 1 || first[0].Series != nil {
		t.Fatalf("Events %+v, want one without a series", first)
	}

	time.Sleep(interval + 100*time.Millisecond)
	refuse()
	eventually(t, 10*time.Second, "the repeat written", func() bool { return emitted() == 2 })
	evs := podEvents(ctx, t, ns, "again")
	if len(evs) != 1 || evs[0].Name != first[0].Name || seriesCount(evs[0]) != 2 || evs[0].Series.LastObservedTime.Before(&first[0].EventTime) {
		t.Fatalf("Events %+v, want the first (%s) with a series of 2", evs, first[0].Name)
	}

	time.Sleep(interval + 100*time.Millisecond)
	refuse()
	// Nothing to wait for: tools/events decides at once to write nothing.
	// Meanwhile a pod that is served gets no Event.
	if r := h.get(servedIP); r.Status != http.StatusOK {
		t.Fatalf("served pod: answered %d %v", r.Status, r.Body)
	}
	time.Sleep(time.Second)
	if evs := podEvents(ctx, t, ns, "served"); len(evs) != 0 {
		t.Fatalf("Events %+v on a pod that was served", evs)
	}
	evs = podEvents(ctx, t, ns, "again")
	if len(evs) != 1 || seriesCount(evs[0]) != 2 || emitted() != 2 {
		t.Fatalf("Events %+v after %d writes, want the series still at 2 on the API server until tools/events ends it", evs, emitted())
	}
	if f := testutil.ToFloat64(h.metrics.Events.WithLabelValues("NoRole", "failed")); f != 0 {
		t.Fatalf("%v writes failed", f)
	}
}
