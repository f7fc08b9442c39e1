package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/metrics"
)

// TestAgentJoinsOnlyWhenWarm: an agent starting on a node that already runs
// pods (an upgrade, or a restart) opens its credential listeners only once
// every pod's credentials are fetched, so even with STS slow, the first
// request of every pod is a hit, never a wait on STS. Without warm-up the
// listeners open as soon as the informer syncs and these requests join the
// fetches in flight.
func TestAgentJoinsOnlyWhenWarm(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	node := "node-" + ns
	const accounts = 3
	for i := range accounts {
		sa := fmt.Sprintf("app-%d", i)
		if _, err := env.CreateServiceAccount(ctx, ns, sa, map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: sa, ServiceAccount: sa, Node: node, IP: addr(27, 0, byte(i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	h := startAgent(t, harnessOptions{node: node, side: true, stsDelay: time.Second})
	if got := h.sts.calls.Load(); got != accounts {
		t.Fatalf("%d STS calls before the agent served, want one per ServiceAccount (%d)", got, accounts)
	}
	for i := range accounts {
		if r := h.get(addr(27, 0, byte(i+1))); r.Status != http.StatusOK {
			t.Fatalf("pod %d: %d %v", i, r.Status, r.Body)
		}
	}
	hits := testutil.ToFloat64(h.metrics.CacheRequests.WithLabelValues(metrics.CacheHit))
	waited := testutil.ToFloat64(h.metrics.CacheRequests.WithLabelValues(metrics.CacheMiss)) +
		testutil.ToFloat64(h.metrics.CacheRequests.WithLabelValues(metrics.CacheCoalesced))
	if hits != accounts || waited != 0 {
		t.Fatalf("first requests: %v hits, %v waited on STS; want %d hits and none waiting", hits, waited, accounts)
	}
	if !h.agent.Warm() {
		t.Fatal("a serving agent does not report itself warm")
	}
}

// TestReadyzSaysWarming: while a starting agent waits for a pod's
// credentials, /readyz says so (503, so the DaemonSet does not count the
// new agent available and stop the old one) and no credential listener is
// open yet.
func TestReadyzSaysWarming(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	node := "node-" + ns
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app", ServiceAccount: "app", Node: node, IP: addr(27, 1, 1)}); err != nil {
		t.Fatal(err)
	}
	var warmingSeen bool
	h := startAgent(t, harnessOptions{node: node, side: true, stsDelay: 2 * time.Second, beforeReady: func(a *agent.Agent, readyz string) {
		if code, body := statusBody(readyz); code == http.StatusServiceUnavailable && body == "warming: fetching credentials for the pods on this node\n" {
			warmingSeen = true
			if n := len(a.Addrs()); n != 0 {
				t.Errorf("%d credential listeners open while warming", n)
			}
		}
	}})
	if !warmingSeen {
		t.Fatal("/readyz never said the agent was warming while STS held the pod's credentials")
	}
	if len(h.agent.Addrs()) != 1 {
		t.Fatalf("listeners %v", h.agent.Addrs())
	}
}
