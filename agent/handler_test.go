package agent

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/roles"
)

// newUnitAgent builds an agent on the fake clientset with one pod
// (ns/app-1 at 10.0.0.1, ServiceAccount app with a role) indexed and its
// credentials cached: the hot path and nothing else. Behaviour that depends
// on the API server is tested in test/integration against a real one.
func newUnitAgent(tb testing.TB) (*Agent, *containerHandler, *cache.Cache) {
	tb.Helper()
	a, c, m := newFakeAgent(tb, -1, 0)
	a.index.upsert(&kube.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app-1", UID: "uid-1"},
		Spec:       kube.PodSpec{NodeName: "node-a", ServiceAccountName: "app"},
		Status:     kube.PodStatus{Phase: kube.PodRunning, PodIP: "10.0.0.1", PodIPs: []kube.PodIP{{IP: "10.0.0.1"}}},
	})
	// A second pod of the same ServiceAccount, for replay tests.
	a.index.upsert(&kube.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "app-2", UID: "uid-2"},
		Spec:       kube.PodSpec{NodeName: "node-a", ServiceAccountName: "app"},
		Status:     kube.PodStatus{Phase: kube.PodRunning, PodIP: "10.0.0.2", PodIPs: []kube.PodIP{{IP: "10.0.0.2"}}},
	})
	// What the binder does when the informer reports the pod: the pod
	// becomes a user of its entry and the cache prefetches.
	if err := a.binder.sync(context.Background(), "uid-1"); err != nil {
		tb.Fatal(err)
	}
	hosts, _ := hostsFor("169.254.170.23:80")
	h := &containerHandler{a: a, hosts: hosts, stats: newEndpointStats(m, "container")}
	// Warm the cache through the handler itself.
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, hitRequest())
	if w.code != http.StatusOK {
		tb.Fatalf("warm-up request answered %d", w.code)
	}
	return a, h, c
}

// newFakeAgent builds an agent on the fake clientset, whose ServiceAccount
// ns/app has a role, with a cache whose fetcher answers at once and the
// given per-address rate limit (negative: off) and burst. No pod is indexed yet.
func newFakeAgent(tb testing.TB, rateLimit float64, rateBurst int) (*Agent, *cache.Cache, *metrics.Metrics) {
	tb.Helper()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: "app", Annotations: map[string]string{roles.RoleAnnotation: "arn:aws:iam::123456789012:role/app"},
	}})
	m := metrics.New(prometheus.NewRegistry())
	c := cache.New(cache.FetcherFunc(func(context.Context, cache.Key, cache.PodRef) (*cache.Credentials, error) {
		now := time.Now()
		return cache.NewCredentials("ASIAEXAMPLE", "secret", "session-token", "123456789012", now, now.Add(time.Hour)), nil
	}), cache.Options{Metrics: m})
	tb.Cleanup(c.Close)
	a, err := New(Options{NodeName: "node-a", Client: kubeclientset.Wrap(client), Cache: c, Logger: zap.NewNop(), Metrics: m,
		DefaultAudience: "sts.amazonaws.com", DefaultTokenExpiration: time.Hour, RateLimit: rateLimit, RateBurst: rateBurst})
	if err != nil {
		tb.Fatal(err)
	}
	return a, c, m
}

func hitRequest() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://169.254.170.23/v1/credentials", nil)
	r.RemoteAddr = "10.0.0.1:40000"
	return r
}

// discardWriter is the cheapest ResponseWriter, so the benchmark measures
// the handler and not a recorder.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header  { return w.h }
func (w *discardWriter) WriteHeader(code int) { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(b)
	return len(b), nil
}

func BenchmarkContainerHit(b *testing.B) {
	_, h, _ := newUnitAgent(b)
	r := hitRequest()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.code = 0
		h.ServeHTTP(w, r)
	}
	if w.code != http.StatusOK {
		b.Fatalf("answered %d", w.code)
	}
}

func TestContainerHitServesRenderedBody(t *testing.T) {
	_, h, _ := newUnitAgent(t)
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, hitRequest())
	if w.code != http.StatusOK || w.n == 0 || w.h.Get("Content-Type") != "application/json" {
		t.Fatalf("code %d, %d bytes, content type %q", w.code, w.n, w.h.Get("Content-Type"))
	}
	allocs := testing.AllocsPerRun(200, func() {
		w.code = 0
		h.ServeHTTP(w, hitRequest2)
	})
	if allocs > 2 {
		t.Errorf("a cache hit allocates %.0f times, want at most 2", allocs)
	}
}

var hitRequest2 = hitRequest()
