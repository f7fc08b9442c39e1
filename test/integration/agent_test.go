package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/metrics"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// subject reads the web identity MinIO recorded in its session token.
func subject(t *testing.T, sessionToken string) string {
	t.Helper()
	parts := strings.Split(sessionToken, ".")
	if len(parts) != 3 {
		t.Fatalf("MinIO session token is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Sub
}

func TestPodsOfDifferentServiceAccountsGetTheirOwnCredentials(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns})
	for _, sa := range []string{"alpha", "beta"} {
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
			t.Fatal(err)
		}
	}
	ipA, ipB := addr(20, 0, 1), addr(20, 0, 2)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "a", ServiceAccount: "alpha", Node: h.node, IP: ipA}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "b", ServiceAccount: "beta", Node: h.node, IP: ipB}); err != nil {
		t.Fatal(err)
	}
	a, b := h.get(ipA), h.get(ipB)
	if a.Status != http.StatusOK || b.Status != http.StatusOK {
		t.Fatalf("statuses %d %v / %d %v", a.Status, a.Body, b.Status, b.Body)
	}
	if a.Body["AccessKeyId"] == b.Body["AccessKeyId"] || a.Body["Token"] == b.Body["Token"] {
		t.Fatal("two ServiceAccounts were served the same credentials")
	}
	for _, c := range []struct {
		r  reply
		sa string
	}{{a, "alpha"}, {b, "beta"}} {
		want := "system:serviceaccount:" + ns + ":" + c.sa
		if got := subject(t, c.r.Body["Token"]); got != want {
			t.Errorf("credentials for %s carry subject %q, want %q", c.sa, got, want)
		}
		for _, field := range []string{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"} {
			if c.r.Body[field] == "" {
				t.Errorf("response lacks %s", field)
			}
		}
		if _, err := time.Parse(time.RFC3339, c.r.Body["Expiration"]); err != nil || !strings.HasSuffix(c.r.Body["Expiration"], "Z") {
			t.Errorf("Expiration %q is not RFC 3339 UTC", c.r.Body["Expiration"])
		}
	}
	// Asked again, each pod still gets its own.
	if again := h.get(ipA); again.Body["AccessKeyId"] != a.Body["AccessKeyId"] {
		t.Errorf("pod a was served different credentials on its second request")
	}
}

func TestConcurrentFirstRequestsMakeOneTokenRequestAndOneSTSCall(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	// Each STS call is held for 500ms so that all requests overlap it.
	h := startAgent(t, harnessOptions{node: "node-" + ns, stsDelay: 500 * time.Millisecond})
	if _, err := env.CreateServiceAccount(ctx, ns, "shared", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	const pods, perPod = 20, 5
	for i := range pods {
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "p" + string(rune('a'+i)), ServiceAccount: "shared", Node: h.node, IP: addr(21, 0, byte(i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	keys := make(chan string, pods*perPod)
	for i := range pods * perPod {
		wg.Go(func() {
			r := h.get(addr(21, 0, byte(i%pods+1)))
			if r.Status != http.StatusOK {
				t.Errorf("request %d: %d %v", i, r.Status, r.Body)
			}
			keys <- r.Body["AccessKeyId"]
		})
	}
	wg.Wait()
	close(keys)
	distinct := map[string]bool{}
	for k := range keys {
		distinct[k] = true
	}
	if len(distinct) != 1 {
		t.Errorf("%d distinct credentials served to one ServiceAccount, want 1", len(distinct))
	}
	if n := h.sts.calls.Load(); n != 1 {
		t.Errorf("%d STS calls, want exactly 1", n)
	}
	if n := testutil.ToFloat64(h.metrics.TokenRequests.WithLabelValues(metrics.ResultSuccess)); n != 1 {
		t.Errorf("%v TokenRequests, want exactly 1", n)
	}
}

func TestPrefetchServesFirstRequestWithoutSTS(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	// Scheduled, not yet started: no IP. The agent should fetch already.
	if err := env.EnsureNode(ctx, h.node); err != nil {
		t.Fatal(err)
	}
	pod, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{NodeName: h.node, ServiceAccountName: "app", AutomountServiceAccountToken: new(bool),
			Containers: []corev1.Container{{Name: "app", Image: "podcreds.invalid/app:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the prefetch of a scheduled pod", func() bool { return h.cachedAny() })
	ip := addr(22, 0, 1)
	if _, err := env.SetPodStatus(ctx, pod, corev1.PodRunning, ip); err != nil {
		t.Fatal(err)
	}
	r := h.get(ip)
	if r.Status != http.StatusOK {
		t.Fatalf("%d %v", r.Status, r.Body)
	}
	if n := h.sts.calls.Load(); n != 1 {
		t.Errorf("%d STS calls, want only the prefetch's", n)
	}
	if miss := testutil.ToFloat64(h.metrics.CacheRequests.WithLabelValues(metrics.CacheMiss)); miss != 0 {
		t.Errorf("%v cache misses on the request path, want 0", miss)
	}
	if hit := testutil.ToFloat64(h.metrics.CacheRequests.WithLabelValues(metrics.CacheHit)); hit != 1 {
		t.Errorf("%v cache hits, want 1", hit)
	}
}

func (h *agentHarness) cachedAny() bool {
	return testutil.ToFloat64(h.metrics.STSRequests.WithLabelValues(metrics.ResultSuccess)) >= 1
}

func TestDeletedPodsEntryIsDroppedAndNeverRefreshed(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	// 2s credentials refreshed at half-life: a live entry would be refreshed
	// several times in the 5s we watch.
	fake := fakests.New(2 * time.Second)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, duration: 15 * time.Minute,
		cache: cache.Options{SafetyMargin: 100 * time.Millisecond, RefreshBefore: time.Nanosecond, RefreshJitter: 0.05}})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: "arn:aws:iam::123456789012:role/app"}); err != nil {
		t.Fatal(err)
	}
	ip := addr(23, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "a background refresh", func() bool { return h.sts.calls.Load() >= 2 })
	if err := env.DeletePod(ctx, ns, "app"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the entry to be dropped", func() bool { return h.cache.Len() == 0 })
	h.cache.WaitIdle()
	after := h.sts.calls.Load()
	time.Sleep(5 * time.Second) // 2.5 lifetimes: long enough for any leftover timer to fire
	if n := h.sts.calls.Load(); n != after {
		t.Errorf("%d STS calls after the pod was deleted, want 0", n-after)
	}
	if r := h.get(ip); r.Status != http.StatusNotFound {
		t.Errorf("deleted pod's address answered %d, want 404", r.Status)
	}
}

func TestRefusals(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	fake := fakests.New(time.Hour)
	h := startAgent(t, harnessOptions{node: "node-" + ns, sts: fake, wait: 200 * time.Millisecond})
	if _, err := env.CreateServiceAccount(ctx, ns, "norole", nil); err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{"denied": "arn:aws:iam::123456789012:role/denied", "throttled": "arn:aws:iam::123456789012:role/throttled", "down": "arn:aws:iam::123456789012:role/down"}
	for sa, role := range roles {
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: role}); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name, sa string, ip byte) {
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: name, ServiceAccount: sa, Node: h.node, IP: addr(24, 0, ip)}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("an unknown address is told it is not a pod on this node after the wait", func(t *testing.T) {
		start := time.Now()
		r := h.get(addr(24, 9, 9))
		if r.Status != http.StatusNotFound || !strings.Contains(r.Body["message"], "not a pod on this node") {
			t.Fatalf("%d %v", r.Status, r.Body)
		}
		if waited := time.Since(start); waited < 200*time.Millisecond {
			t.Errorf("answered after %s, before the configured 200ms wait", waited)
		}
	})
	t.Run("a pod whose ServiceAccount has no role gets 404 naming the ServiceAccount", func(t *testing.T) {
		run("norole", "norole", 1)
		r := h.get(addr(24, 0, 1))
		if r.Status != http.StatusNotFound || !strings.Contains(r.Body["Message"], ns+"/norole") || r.Body["Code"] != r.Body["code"] {
			t.Fatalf("%d %v", r.Status, r.Body)
		}
	})
	t.Run("STS access denied is a final 403", func(t *testing.T) {
		fake.SetFail(&smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized"})
		run("denied", "denied", 2)
		r := h.get(addr(24, 0, 2))
		if r.Status != http.StatusForbidden || r.RetryAfter != "" {
			t.Fatalf("%d retry-after %q %v", r.Status, r.RetryAfter, r.Body)
		}
	})
	for _, tc := range []struct {
		name, sa string
		ip       byte
		err      error
	}{
		{"STS throttling is a 503 with Retry-After", "throttled", 3, &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}},
		{"STS unavailable is a 503 with Retry-After", "down", 4, &smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "try later", Fault: smithy.FaultServer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetFail(tc.err)
			run(tc.sa, tc.sa, tc.ip)
			r := h.get(addr(24, 0, tc.ip))
			if r.Status != http.StatusServiceUnavailable || r.RetryAfter == "" {
				t.Fatalf("%d retry-after %q %v", r.Status, r.RetryAfter, r.Body)
			}
			if r.Body["Code"] == "" || r.Body["code"] != r.Body["Code"] || r.Body["message"] != r.Body["Message"] {
				t.Errorf("error body must carry code/message in both spellings: %v", r.Body)
			}
		})
	}
	t.Run("methods other than GET are refused", func(t *testing.T) {
		res, err := podClient(addr(24, 0, 1)).Post(h.url, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST answered %d", res.StatusCode)
		}
	})
	t.Run("a Host that is not the agent's is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, h.url, nil)
		req.Host = "rebound.example"
		res, err := podClient(addr(24, 0, 1)).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign Host answered %d", res.StatusCode)
		}
	})
}
