package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/roles"
)

// The hot path keeps a pod's role decision instead of deciding on every
// request. Keeping it must never change an answer: a ServiceAccount whose
// role changes is served its new role as soon as the agent's answer for it
// expires (--serviceaccount-ttl), exactly as without the kept decision, and
// the pod is queued to be rebound to its new entry.
func TestAKeptRoleDecisionEndsWithTheServiceAccountAnswer(t *testing.T) {
	const roleA, roleB = "arn:aws:iam::123456789012:role/a", "arn:aws:iam::123456789012:role/b"
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: "app", Annotations: map[string]string{roles.RoleAnnotation: roleA},
	}})
	clk := clocktesting.NewFakeClock(time.Now())
	m := metrics.New(prometheus.NewRegistry())
	var mu sync.Mutex
	var fetched []string
	c := cache.New(cache.FetcherFunc(func(_ context.Context, key cache.Key, _ cache.PodRef) (*cache.Credentials, error) {
		mu.Lock()
		fetched = append(fetched, key.RoleARN)
		mu.Unlock()
		now := time.Now()
		return cache.NewCredentials("ASIA"+key.RoleARN[len(key.RoleARN)-1:], "secret", "token", "123456789012", now, now.Add(time.Hour)), nil
	}), cache.Options{Metrics: m})
	t.Cleanup(c.Close)
	a, err := New(Options{NodeName: "node-a", Client: kubeclientset.Wrap(client), Cache: c, Logger: zap.NewNop(), Metrics: m, Clock: clk,
		ServiceAccountTTL: 30 * time.Second, DefaultAudience: "sts.amazonaws.com", DefaultTokenExpiration: time.Hour, RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	a.index.upsert(&kube.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app-1", UID: "uid-1"},
		Spec:       kube.PodSpec{NodeName: "node-a", ServiceAccountName: "app"},
		Status:     kube.PodStatus{Phase: kube.PodRunning, PodIP: "10.0.0.1", PodIPs: []kube.PodIP{{IP: "10.0.0.1"}}},
	})
	hosts, _ := hostsFor("169.254.170.23:80")
	h := &containerHandler{a: a, hosts: hosts, stats: newEndpointStats(m, "container")}
	served := func() string {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, hitRequest())
		if w.Code != http.StatusOK {
			t.Fatalf("answered %d: %s", w.Code, w.Body)
		}
		return w.Body.String()
	}
	pod := a.index.Pod("uid-1")

	// Not yet bound: the request queues the pod for its binder and keeps
	// nothing, so every request until the binder has run notices it.
	served()
	if pod.decision.Load() != nil || a.binder.queue.Len() == 0 {
		t.Fatalf("an unbound pod's decision was kept (queued: %d)", a.binder.queue.Len())
	}
	for a.binder.queue.Len() > 0 {
		uid, _ := a.binder.queue.Get()
		if err := a.binder.sync(ctx, uid); err != nil {
			t.Fatal(err)
		}
		a.binder.queue.Done(uid)
	}
	if body := served(); !strings.Contains(body, "ASIAa") {
		t.Fatalf("served %s, want role a's credentials", body)
	}
	d := pod.decision.Load()
	if d == nil || d.ref.Key().RoleARN != roleA || !d.until.Equal(clk.Now().Add(30*time.Second)) {
		t.Fatalf("kept decision %+v, want role a until the ServiceAccount answer expires", d)
	}

	sa, err := client.CoreV1().ServiceAccounts("ns").Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa.Annotations[roles.RoleAnnotation] = roleB
	if _, err := client.CoreV1().ServiceAccounts("ns").Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Step(30*time.Second - time.Millisecond)
	if body := served(); !strings.Contains(body, "ASIAa") {
		t.Fatalf("before the ServiceAccount answer expired, served %s", body)
	}
	clk.Step(time.Millisecond)
	if body := served(); !strings.Contains(body, "ASIAb") {
		t.Fatalf("once the ServiceAccount answer expired, served %s, want role b's credentials", body)
	}
	if a.binder.queue.Len() == 0 {
		t.Fatal("the pod was not queued to be rebound to its new role")
	}
	mu.Lock()
	defer mu.Unlock()
	if fetched[len(fetched)-1] != roleB || slices.Index(fetched, roleB) != len(fetched)-1 {
		t.Fatalf("fetched %v, want role b once, last", fetched)
	}
}
