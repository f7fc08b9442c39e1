package roles

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/kube"
)

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"arn:aws:iam::111111111111:role/app", "arn:aws:iam::111111111111:role/app", true},
		{"arn:aws:iam::111111111111:role/app", "arn:aws:iam::111111111111:role/app2", false},
		{"arn:aws:iam::111111111111:role/team-a/*", "arn:aws:iam::111111111111:role/team-a/app", true},
		// `*` never crosses '/': a pattern for one role path level grants
		// nothing nested below it.
		{"arn:aws:iam::111111111111:role/team-a/*", "arn:aws:iam::111111111111:role/team-a/deep/path", false},
		{"arn:aws:iam::123456789012:role/team-a-*", "arn:aws:iam::123456789012:role/team-a-x", true},
		{"arn:aws:iam::123456789012:role/team-a-*", "arn:aws:iam::123456789012:role/team-a-x/anything", false},
		{"arn:aws:iam::123456789012:role/*/reader", "arn:aws:iam::123456789012:role/team-a/reader", true},
		{"arn:aws:iam::123456789012:role/*/reader", "arn:aws:iam::123456789012:role/a/b/reader", false},
		{"arn:aws:iam::111111111111:role/team-a/*", "arn:aws:iam::111111111111:role/team-b/x", false},
		{"arn:aws:iam::*:role/reader", "arn:aws:iam::222222222222:role/reader", true},
		{"arn:aws:iam::*:role/reader", "arn:aws:iam::222222222222:role/readers", false},
		{"*", "anything", true},
		{"*", "any/thing", false},
		{"", "", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		// Many stars against a long name stay fast (patterns are user input).
		{strings.Repeat("*a", 30) + "b", strings.Repeat("a", 2000), false},
	} {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func TestAccountOf(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:iam::123456789012:role/app":      "123456789012",
		"arn:aws-cn:iam::123456789012:role/a/b:c": "123456789012",
		"arn:minio:iam:::role/xyz":                "",
		"not-an-arn":                              "",
	} {
		if got := accountOf(arn); got != want {
			t.Errorf("accountOf(%q) = %q, want %q", arn, got, want)
		}
	}
}

func TestRoleResolution(t *testing.T) {
	const roleA, roleB, roleOther = "arn:aws:iam::111111111111:role/a", "arn:aws:iam::111111111111:role/team/b", "arn:aws:iam::999999999999:role/x"
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "open", Annotations: map[string]string{AllowedRolesAnnotation: "arn:aws:iam::111111111111:role/team/*, " + roleOther}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "closed"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "sa", Annotations: map[string]string{
			RoleAnnotation: roleA, AudienceAnnotation: "custom-aud", TokenExpirationAnnotation: "7200"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "plain"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "closed", Name: "sa", Annotations: map[string]string{RoleAnnotation: roleA}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "badexp", Annotations: map[string]string{RoleAnnotation: roleA, TokenExpirationAnnotation: "60"}}},
	)
	r := NewRoleResolver(kubeclientset.Wrap(client), clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour, []string{"111111111111"})
	pod := func(ns, sa, role string) Pod {
		return Pod{Namespace: ns, Name: "p", ServiceAccount: sa, RoleARN: role}
	}
	for _, tc := range []struct {
		name     string
		pod      Pod
		wantRole string
		status   int
	}{
		{"the ServiceAccount's role and annotations are used", pod("open", "sa", ""), roleA, 0},
		{"a pod may pick a role its namespace allows", pod("open", "sa", roleB), roleB, 0},
		{"a pod of a ServiceAccount without a role may pick an allowed role", pod("open", "plain", roleB), roleB, 0},
		{"a role the namespace does not allow is refused, with no fallback", pod("open", "sa", "arn:aws:iam::111111111111:role/admin"), "", http.StatusForbidden},
		{"a namespace without the annotation allows no choice", pod("closed", "sa", roleB), "", http.StatusForbidden},
		{"an allowed role in an account off the allow-list is refused", pod("open", "sa", roleOther), "", http.StatusForbidden},
		{"a ServiceAccount without a role and no choice is 404", pod("open", "plain", ""), "", http.StatusNotFound},
		{"a missing ServiceAccount is 404", pod("open", "ghost", ""), "", http.StatusNotFound},
		{"a token expiration below 10 minutes is a 400 configuration error", pod("open", "badexp", ""), "", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := r.Resolve(context.Background(), tc.pod)
			if tc.status != 0 {
				var fe *failure.Error
				if !errors.As(err, &fe) || fe.Status != tc.status {
					t.Fatalf("got %v, %v; want status %d", key, err, tc.status)
				}
				return
			}
			if err != nil || key.RoleARN != tc.wantRole {
				t.Fatalf("got %+v, %v; want role %s", key, err, tc.wantRole)
			}
			if tc.pod.ServiceAccount == "sa" && (key.Audience != "custom-aud" || key.TokenExpiration != 2*time.Hour) {
				t.Errorf("ServiceAccount annotations not honoured: %+v", key)
			}
		})
	}
}

// A ServiceAccount "x" in a namespace named "ns" and the namespace "x" once
// shared one singleflight key ("ns/x"), so a lookup of one could be answered
// with the other's result.
func TestServiceAccountAndNamespaceLookupsNeverShareAnAnswer(t *testing.T) {
	const role, picked = "arn:aws:iam::111111111111:role/sa-role", "arn:aws:iam::111111111111:role/picked"
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{AllowedRolesAnnotation: picked}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", Annotations: map[string]string{RoleAnnotation: role}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "app"}},
	)
	// Hold the ServiceAccount read of ns/x in flight while namespace x is
	// looked up.
	held := &heldClient{Client: kubeclientset.Wrap(client), entered: make(chan struct{}, 10), gate: make(chan struct{}), nsRead: make(chan struct{}, 10)}
	entered, gate, nsRead := held.entered, held.gate, held.nsRead
	r := NewRoleResolver(held, clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour, nil)
	ctx := context.Background()

	saDone := make(chan error, 1)
	var saKey cache.Key
	go func() {
		var err error
		saKey, err = r.Resolve(ctx, Pod{Namespace: "ns", Name: "p", ServiceAccount: "x"})
		saDone <- err
	}()
	<-entered
	nsDone := make(chan error, 1)
	var nsKey cache.Key
	go func() {
		var err error
		nsKey, err = r.Resolve(ctx, Pod{Namespace: "x", Name: "q", ServiceAccount: "app", RoleARN: picked})
		nsDone <- err
	}()
	select {
	case <-nsRead:
	case <-time.After(5 * time.Second): // a deadlock guard, not a timing claim
		t.Error("the namespace lookup never reached the API server: it joined the ServiceAccount's flight")
	}
	close(gate)
	if err := <-saDone; err != nil || saKey.RoleARN != role {
		t.Errorf("ServiceAccount ns/x resolved to %+v, %v; want role %s", saKey, err, role)
	}
	if err := <-nsDone; err != nil || nsKey.RoleARN != picked {
		t.Errorf("pod in namespace x picking an allowed role resolved to %+v, %v; want role %s", nsKey, err, picked)
	}
}

// heldClient holds reads of ServiceAccounts in namespace "ns" until gate is
// closed, and reports namespace reads.
type heldClient struct {
	kube.Client
	entered, nsRead chan struct{}
	gate            chan struct{}
}

func (c *heldClient) GetServiceAccount(ctx context.Context, namespace, name string) (*kube.ServiceAccount, error) {
	if namespace == "ns" {
		c.entered <- struct{}{}
		<-c.gate
	}
	return c.Client.GetServiceAccount(ctx, namespace, name)
}

func (c *heldClient) GetNamespace(ctx context.Context, name string) (*kube.Namespace, error) {
	c.nsRead <- struct{}{}
	return c.Client.GetNamespace(ctx, name)
}

// FuzzGlobMatch checks globMatch against a regular expression built from the
// pattern: literal text quoted, each `*` a run without '/'. Patterns come from
// a namespace annotation that the namespace's users may write.
func FuzzGlobMatch(f *testing.F) {
	f.Add("arn:aws:iam::123456789012:role/team-a-*", "arn:aws:iam::123456789012:role/team-a-x/anything")
	f.Add("a*b*c", "aXXbYYc")
	f.Add("*/*", "a/b/c")
	f.Add("**", "x/")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !utf8.ValidString(pattern) {
			return // the reference regexp needs UTF-8; globMatch works on bytes
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		want := regexp.MustCompile(`^(?s:` + strings.Join(parts, `[^/]*`) + `)$`).MatchString(s)
		if got := globMatch(pattern, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	})
}

// TestConcurrentLookupsReadTheAPIOnce: however many pods of one
// ServiceAccount in one namespace resolve at once, the API server is asked
// once for the ServiceAccount and once for the namespace. (A caller that
// missed the cache while another's flight was storing its answer once
// started a second flight.)
func TestConcurrentLookupsReadTheAPIOnce(t *testing.T) {
	const role, picked = "arn:aws:iam::111111111111:role/a", "arn:aws:iam::111111111111:role/team/b"
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "open", Annotations: map[string]string{AllowedRolesAnnotation: picked}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "sa", Annotations: map[string]string{RoleAnnotation: role}}},
	)
	for round := range 300 {
		counted := &countingClient{Client: kubeclientset.Wrap(client)}
		r := NewRoleResolver(counted, clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour, nil)
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				p := Pod{Namespace: "open", Name: "p", ServiceAccount: "sa"}
				if i%2 == 1 {
					p.RoleARN = picked
				}
				for range i { // arrive spread out, some as the first flight ends
					runtime.Gosched()
				}
				if _, err := r.Resolve(context.Background(), p); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if sa, ns := counted.sa.Load(), counted.ns.Load(); sa != 1 || ns != 1 {
			t.Fatalf("round %d: 16 concurrent lookups read the ServiceAccount %d times and the namespace %d times, want once each", round, sa, ns)
		}
	}
}

type countingClient struct {
	kube.Client
	sa, ns atomic.Int32
}

func (c *countingClient) GetServiceAccount(ctx context.Context, namespace, name string) (*kube.ServiceAccount, error) {
	c.sa.Add(1)
	return c.Client.GetServiceAccount(ctx, namespace, name)
}

func (c *countingClient) GetNamespace(ctx context.Context, name string) (*kube.Namespace, error) {
	c.ns.Add(1)
	return c.Client.GetNamespace(ctx, name)
}

// A caller may keep a successful decision until its Until (the agent does,
// per pod, on its hot path), so Until must never outlast an answer it rests
// on: once either the ServiceAccount's or the namespace's answer expires, a
// changed annotation must be decided afresh.
func TestADecisionHoldsUntilTheFirstAnswerItRestsOnExpires(t *testing.T) {
	const roleA, roleB, picked = "arn:aws:iam::111111111111:role/a", "arn:aws:iam::111111111111:role/b", "arn:aws:iam::111111111111:role/team/p"
	ctx := context.Background()
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "open", Annotations: map[string]string{AllowedRolesAnnotation: "arn:aws:iam::111111111111:role/team/*"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "sa", Annotations: map[string]string{RoleAnnotation: roleA}}},
	)
	clk := clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))
	r := NewRoleResolver(kubeclientset.Wrap(client), clk, time.Minute, "sts.amazonaws.com", time.Hour, nil)
	own := Pod{Namespace: "open", Name: "p", ServiceAccount: "sa"}

	d := r.Decide(ctx, own)
	if d.Err != nil || d.Key.RoleARN != roleA || !d.Until.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("decision %+v, want role %s until %s", d, roleA, clk.Now().Add(time.Minute))
	}
	// The namespace is read 30 s later, so a decision that rests on both
	// holds only until the ServiceAccount's answer expires.
	clk.Step(30 * time.Second)
	choosing := own
	choosing.RoleARN = picked
	if d := r.Decide(ctx, choosing); d.Err != nil || !d.Until.Equal(clk.Now().Add(30*time.Second)) {
		t.Fatalf("decision %+v, want it to hold until the ServiceAccount's answer expires, %s", d, clk.Now().Add(30*time.Second))
	}
	sa, err := client.CoreV1().ServiceAccounts("open").Get(ctx, "sa", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa.Annotations[RoleAnnotation] = roleB
	if _, err := client.CoreV1().ServiceAccounts("open").Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(30*time.Second - time.Nanosecond) // the last instant Until vouches for
	if d := r.Decide(ctx, own); d.Key.RoleARN != roleA {
		t.Fatalf("before Until the decision changed to %s", d.Key.RoleARN)
	}
	clk.Step(time.Nanosecond)
	if d := r.Decide(ctx, own); d.Err != nil || d.Key.RoleARN != roleB {
		t.Fatalf("at Until the decision is %+v, want the changed role %s", d, roleB)
	}
	// A refusal is never to be kept.
	if d := r.Decide(ctx, Pod{Namespace: "open", Name: "q", ServiceAccount: "ghost"}); d.Err == nil || !d.Until.IsZero() {
		t.Fatalf("a refused decision has Until %s (err %v), want zero", d.Until, d.Err)
	}
}
