package integration

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/tokenreq"
)

const fakeRole = "arn:aws:iam::111111111111:role/app"

// runRolePods creates n ServiceAccounts with a role and one pod each at
// 127.<a>.0.<i+1>.
func runRolePods(t *testing.T, h *agentHarness, ns string, a byte, n int) {
	t.Helper()
	ctx := ctxT(t)
	for i := range n {
		sa := fmt.Sprintf("sa-%d", i)
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: fmt.Sprintf("%s-%d", fakeRole, i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: fmt.Sprintf("p-%d", i), ServiceAccount: sa, Node: h.node, IP: addr(a, 0, byte(i+1))}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSTSOutageForTwoLifetimes: cached credentials are served until they
// expire, then 503 with Retry-After; retries follow a jittered exponential
// backoff (requests do not add STS calls); once STS is back, fresh
// credentials arrive within one backoff step.
func TestSTSOutageForTwoLifetimes(t *testing.T) {
	ns := uniqueName(t)
	const lifetime = 4 * time.Second
	fake := fakests.New(lifetime)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, cache: cache.Options{
		SafetyMargin: 300 * time.Millisecond, RefreshFraction: 0.5, RefreshJitter: 0.05, RefreshBefore: time.Nanosecond,
		InitialBackoff: 200 * time.Millisecond, MaxBackoff: 1600 * time.Millisecond,
	}})
	runRolePods(t, h, ns, 40, 1)
	ip := addr(40, 0, 1)
	eventually(t, 10*time.Second, "first credentials", func() bool { return h.get(ip).Status == http.StatusOK })

	fake.SetFail(fakests.Unavailable)
	outage := time.Now()
	before := h.sts.calls.Load()
	var served, refused, requests int
	var lastServedExpiry time.Time
	for time.Since(outage) < 2*lifetime {
		r := h.get(ip)
		requests++
		switch r.Status {
		case http.StatusOK:
			exp, _ := time.Parse(time.RFC3339, r.Body["Expiration"])
			if !time.Now().Before(exp) {
				t.Fatalf("served credentials that expired at %s", exp)
			}
			if refused > 0 {
				t.Fatalf("served credentials again after answering 503 during the outage")
			}
			served++
			lastServedExpiry = exp
		case http.StatusServiceUnavailable:
			if r.RetryAfter == "" {
				t.Fatalf("503 without Retry-After: %v", r.Body)
			}
			refused++
		default:
			t.Fatalf("answered %d %v during the outage", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	calls := h.sts.callTimes()[before:]
	t.Logf("outage of %s: %d requests, %d served (credentials valid to %s), %d answered 503, %d STS attempts",
		2*lifetime, requests, served, lastServedExpiry.Sub(outage).Round(time.Millisecond), refused, len(calls))
	if served == 0 || refused == 0 {
		t.Fatalf("want cached credentials served and then 503s, got %d served and %d refused", served, refused)
	}
	// Backoff 200ms doubling to 1.6s over ~6s of failures: 6–12 attempts,
	// far fewer than the requests made.
	if len(calls) < 4 || len(calls) > 14 || len(calls) > requests/4 {
		t.Fatalf("%d STS attempts during the outage for %d requests: not a backoff", len(calls), requests)
	}
	// The upper bound tells a capped backoff from an uncapped one (whose
	// next step would be 3.2 s), with room for a timer that fires late on
	// a loaded machine: a bound at 1.6 s itself was a flaky timed test.
	for i := 2; i < len(calls); i++ {
		gap := calls[i].Sub(calls[i-1])
		if gap < 90*time.Millisecond || gap > 3*time.Second {
			t.Errorf("attempt %d came %s after the previous one: outside the backoff's [100ms, 1.6s], even allowing for a late timer", i, gap)
		}
	}

	fake.SetFail(nil)
	back := time.Now()
	eventually(t, 5*time.Second, "fresh credentials after the outage", func() bool { return h.get(ip).Status == http.StatusOK })
	t.Logf("fresh credentials %s after STS came back (max backoff 1.6s)", time.Since(back).Round(time.Millisecond))
}

// TestSTSThrottlingBacksOffTheWholeNode: while STS throttles, the node's
// budget halves and the calls it makes stay far below what 20 pods' retries
// would cause.
func TestSTSThrottlingBacksOffTheWholeNode(t *testing.T) {
	ns := uniqueName(t)
	fake := fakests.New(time.Hour)
	fake.SetFail(fakests.Throttling)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, stsRate: 10, cache: cache.Options{InitialBackoff: 200 * time.Millisecond, MaxBackoff: 2 * time.Second, MaxWait: 800 * time.Millisecond}})
	runRolePods(t, h, ns, 41, 20)
	start := time.Now()
	requests := 0
	for time.Since(start) < 4*time.Second {
		for i := range 20 {
			r := h.get(addr(41, 0, byte(i+1)))
			requests++
			if r.Status != http.StatusServiceUnavailable || r.RetryAfter == "" {
				t.Fatalf("a throttled fetch answered %d %q", r.Status, r.RetryAfter)
			}
		}
	}
	elapsed := time.Since(start)
	calls := h.sts.calls.Load()
	budget := testutil.ToFloat64(h.metrics.STSBudget)
	throttled := testutil.ToFloat64(h.metrics.STSThrottled)
	t.Logf("%s of throttling: %d requests, %d STS calls, %v throttles, budget %v/s", elapsed.Round(time.Millisecond), requests, calls, throttled, budget)
	if budget > 1 {
		t.Errorf("the node's STS budget is %v/s after throttling, want it cut towards the floor (0.5/s)", budget)
	}
	// Without the budget, 20 entries retrying from 200ms up to 2s would make
	// about elapsed/1s calls each. With it: the initial burst plus a trickle.
	if limit := int64(10 + elapsed.Seconds()*2); calls > limit {
		t.Errorf("%d STS calls in %s while throttled, want at most %d: a retry storm", calls, elapsed.Round(time.Second), limit)
	}
	if throttled == 0 || float64(calls) < throttled {
		t.Errorf("throttle counter %v for %d calls", throttled, calls)
	}
	fake.SetFail(nil)
	recovery := time.Now()
	for i := range 20 {
		eventually(t, 60*time.Second, "every pod served after throttling ends", func() bool { return h.get(addr(41, 0, byte(i+1))).Status == http.StatusOK })
	}
	t.Logf("all 20 entries fresh %s after throttling ended", time.Since(recovery).Round(time.Millisecond))
}

// TestSlowSTS: a 10 s STS delays nobody with cached credentials; a request
// for a new key is answered 503 within about a second while the fetch goes
// on, and the first request after it lands is a hit.
func TestSlowSTS(t *testing.T) {
	ns := uniqueName(t)
	fake := fakests.New(time.Hour)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, cache: cache.Options{MaxWait: 800 * time.Millisecond}})
	runRolePods(t, h, ns, 42, 1)
	cached := addr(42, 0, 1)
	eventually(t, 10*time.Second, "cached credentials", func() bool { return h.get(cached).Status == http.StatusOK })

	fake.SetLatency(10 * time.Second)
	ctx := ctxT(t)
	if _, err := env.CreateServiceAccount(ctx, ns, "new", map[string]string{testenv.RoleAnnotation: fakeRole + "-new"}); err != nil {
		t.Fatal(err)
	}
	fresh := addr(42, 0, 99)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "new", ServiceAccount: "new", Node: h.node, IP: fresh}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := h.get(fresh)
	waited := time.Since(start)
	if r.Status != http.StatusServiceUnavailable || r.RetryAfter == "" {
		t.Fatalf("a new key during a 10s STS call answered %d %v", r.Status, r.Body)
	}
	if waited > 3*time.Second {
		t.Fatalf("the new key's request waited %s; SDKs give up after 1–2s", waited)
	}
	t.Logf("new key answered 503 after %s", waited.Round(time.Millisecond))
	if c := h.get(cached); c.Status != http.StatusOK {
		t.Fatalf("a cached key answered %d while STS was slow", c.Status)
	}
	callsBefore := h.sts.calls.Load()
	hitsBefore := testutil.ToFloat64(h.metrics.CacheRequests.WithLabelValues(metrics.CacheHit))
	eventually(t, 20*time.Second, "the slow fetch to land", func() bool { return h.cache.Len() == 2 && fetched(h) >= 2 })
	if r := h.get(fresh); r.Status != http.StatusOK {
		t.Fatalf("after the slow fetch landed: %d", r.Status)
	}
	if h.sts.calls.Load() != callsBefore {
		t.Errorf("the request after the fetch landed made another STS call")
	}
	if hits := testutil.ToFloat64(h.metrics.CacheRequests.WithLabelValues(metrics.CacheHit)); hits <= hitsBefore {
		t.Errorf("the request after the fetch landed was not a hit")
	}
}

func fetched(h *agentHarness) float64 {
	return testutil.ToFloat64(h.metrics.STSRequests.WithLabelValues(metrics.ResultSuccess))
}

// TestAPIServerOutage: kube-apiserver stopped for 60s and restarted. Known
// pods are served throughout, the agent stays ready, the informer recovers,
// and pods created after the restart are served.
func TestAPIServerOutage(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	fake := fakests.New(time.Hour)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, side: true})
	runRolePods(t, h, ns, 43, 5)
	for i := range 5 {
		eventually(t, 10*time.Second, "known pods served", func() bool { return h.get(addr(43, 0, byte(i+1))).Status == http.StatusOK })
	}
	readyz := "http://" + h.agent.SideAddrs()[0].String() + "/readyz"

	env.StopAPIServer()
	stopped := time.Now()
	failed, total := 0, 0
	for time.Since(stopped) < 60*time.Second {
		for i := range 5 {
			total++
			if r := h.get(addr(43, 0, byte(i+1))); r.Status != http.StatusOK {
				failed++
				t.Errorf("known pod %d answered %d %v during the API outage", i, r.Status, r.Body)
			}
		}
		if s := status(t, readyz); s != http.StatusOK {
			t.Errorf("/readyz %d during the API outage: the agent can still serve known pods", s)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := env.StartAPIServer(ctx); err != nil {
		t.Fatalf("restarting kube-apiserver: %v", err)
	}
	t.Logf("60s API outage: %d requests from known pods, %d failed", total, failed)
	// The informer reconnects by itself: a pod created now is served.
	if _, err := env.CreateServiceAccount(ctx, ns, "after", map[string]string{testenv.RoleAnnotation: fakeRole + "-after"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "after", ServiceAccount: "after", Node: h.node, IP: addr(43, 1, 1)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "a pod created after the restart to be served", func() bool { return h.get(addr(43, 1, 1)).Status == http.StatusOK })
}

// TestAgentRestartWith250Pods measures how long an agent takes, on a node
// that already runs 250 pods (50 ServiceAccounts), to be ready and to have
// every entry prefetched.
func TestAgentRestartWith250Pods(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	node := "node-" + ns
	for i := range 50 {
		if _, err := env.CreateServiceAccount(ctx, ns, fmt.Sprintf("sa-%d", i), map[string]string{testenv.RoleAnnotation: fmt.Sprintf("%s-%d", fakeRole, i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 250 {
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: fmt.Sprintf("p-%d", i), ServiceAccount: fmt.Sprintf("sa-%d", i%50), Node: node, IP: addr(44, byte(i/200), byte(i%200+1))}); err != nil {
			t.Fatal(err)
		}
	}
	fake := fakests.New(time.Hour)
	fake.SetLatency(50 * time.Millisecond)
	start := time.Now()
	h := startAgent(t, harnessOptions{node: node, sts: fake})
	ready := time.Since(start)
	eventually(t, 60*time.Second, "all 50 entries prefetched", func() bool { return fetched(h) == 50 })
	prefetched := time.Since(start)
	t.Logf("agent restart with 250 pods / 50 ServiceAccounts: ready in %s, all entries prefetched in %s (STS latency 50ms)",
		ready.Round(time.Millisecond), prefetched.Round(time.Millisecond))
	if n := h.sts.calls.Load(); n != 50 {
		t.Errorf("%d STS calls for 50 ServiceAccounts", n)
	}
	if r := h.get(addr(44, 0, 1)); r.Status != http.StatusOK {
		t.Fatalf("a pod after restart answered %d", r.Status)
	}
}

// TestTokenRequestRefused: a deleted ServiceAccount, or a pod deleted while
// its token is being requested, is a final 4xx, not a retry loop.
func TestTokenRequestRefused(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	fake := fakests.New(time.Hour)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake})

	t.Run("a deleted ServiceAccount is a final 404 without retries", func(t *testing.T) {
		if _, err := env.CreateServiceAccount(ctx, ns, "doomed", map[string]string{testenv.RoleAnnotation: fakeRole}); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.CoreV1().ServiceAccounts(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		ip := addr(45, 0, 1)
		// The pod outlives its ServiceAccount (admission checks only at creation).
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "orphan", ServiceAccount: "doomed", Node: h.node, IP: ip}); err == nil {
			before := testutil.ToFloat64(h.metrics.TokenRequests.WithLabelValues(metrics.ResultFinal)) + testutil.ToFloat64(h.metrics.TokenRequests.WithLabelValues(metrics.ResultRetriable))
			for range 20 {
				if r := h.get(ip); r.Status != http.StatusNotFound {
					t.Fatalf("answered %d %v, want a final 404", r.Status, r.Body)
				}
			}
			after := testutil.ToFloat64(h.metrics.TokenRequests.WithLabelValues(metrics.ResultFinal)) + testutil.ToFloat64(h.metrics.TokenRequests.WithLabelValues(metrics.ResultRetriable))
			if after-before > 1 {
				t.Errorf("%v failed TokenRequests for 20 requests: a retry loop", after-before)
			}
			return
		}
		// The API server refused the pod (ServiceAccount admission): the
		// agent never sees it, and the address is simply unknown.
		if r := h.get(ip); r.Status != http.StatusNotFound {
			t.Fatalf("answered %d, want 404", r.Status)
		}
	})

	t.Run("a token for a pod deleted mid-flight is a final refusal", func(t *testing.T) {
		if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: fakeRole}); err != nil {
			t.Fatal(err)
		}
		pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "brief", ServiceAccount: "app", Node: h.node, IP: addr(45, 0, 2)})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.DeletePod(ctx, ns, "brief"); err != nil {
			t.Fatal(err)
		}
		m := metrics.New(nil)
		tokens := tokenreq.NewTokenManager(secrets.agentClient(), tokenreq.TokenOptions{Metrics: m})
		_, err = tokens.Token(ctx, tokenreq.TokenSpec{Namespace: ns, ServiceAccount: "app", Audience: testenv.Audience, Expiration: time.Hour,
			Pod: cache.PodRef{Namespace: ns, Name: pod.Name, UID: pod.UID}})
		var fe *failure.Error
		if !errors.As(err, &fe) || fe.Retriable() || fe.Status < 400 || fe.Status > 499 {
			t.Fatalf("TokenRequest for a deleted pod: %v, want a final 4xx", err)
		}
		if n := testutil.ToFloat64(m.TokenRequests.WithLabelValues(metrics.ResultFinal)); n != 1 {
			t.Errorf("%v TokenRequest calls for one refusal", n)
		}
	})
}
