package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

func TestTwoLivePodsOnOneAddressAreNeverGuessed(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns})
	for _, sa := range []string{"one", "two"} {
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
			t.Fatal(err)
		}
	}
	ip := addr(28, 0, 1)
	for _, sa := range []string{"one", "two"} {
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: sa, ServiceAccount: sa, Node: h.node, IP: ip}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "both pods indexed", func() bool { return h.get(ip).Status != http.StatusOK })
	r := h.get(ip)
	if r.Status != http.StatusServiceUnavailable || r.RetryAfter == "" || !strings.Contains(r.Body["message"], "refusing to guess") {
		t.Fatalf("%d %q %v", r.Status, r.RetryAfter, r.Body)
	}
	// Once one of them is gone, the other is served.
	if err := env.DeletePod(ctx, ns, "one"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the survivor to be served", func() bool { return h.get(ip).Status == http.StatusOK })
	if got := subject(t, h.get(ip).Body["Token"]); got != "system:serviceaccount:"+ns+":two" {
		t.Fatalf("served %s", got)
	}
}

// TestRequestBeforeThePodIsKnownIsServedWhenItAppears: a pod's first request
// can beat its status update to the agent; it waits, woken by the informer,
// instead of failing.
func TestRequestBeforeThePodIsKnownIsServedWhenItAppears(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, wait: 5 * time.Second})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(29, 0, 1)
	got := make(chan reply, 1)
	start := time.Now()
	go func() { got <- h.get(ip) }()
	time.Sleep(200 * time.Millisecond)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "late", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.Status != http.StatusOK {
		t.Fatalf("%d %v", r.Status, r.Body)
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Errorf("answered after %s: the informer event should have woken the request well before the 5s wait", waited)
	}
}
