package integration

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/kube"
)

// lookupCounter counts the agent's pod LISTs by address (those with a
// status.podIP selector); the informer's own LIST is not one of them.
type lookupCounter struct {
	kube.Client
	n atomic.Int64
}

func (c *lookupCounter) ListPods(ctx context.Context, o metav1.ListOptions) (*kube.PodList, error) {
	if strings.Contains(o.FieldSelector, "status.podIP") {
		c.n.Add(1)
	}
	return c.Client.ListPods(ctx, o)
}

// TestAddressesNotServedCostBoundedLookups: a tenant that sets a long grace
// period, ignores SIGTERM and deletes its own pod keeps asking from the
// terminating pod's address; a process on the node asks from addresses no
// pod has. The first is answered from the index with no LIST at all; the
// second costs at most one LIST per address per remembering window, and all
// of them together stay within the lookups' own budget.
func TestAddressesNotServedCostBoundedLookups(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	lists := &lookupCounter{}
	h := startAgent(t, harnessOptions{node: "node-" + ns, wait: 10 * time.Millisecond, wrapClient: func(c kube.Client) kube.Client {
		lists.Client = c
		return lists
	}})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(61, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "stubborn", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the pod to be served", func() bool { return h.get(ip).Status == http.StatusOK })
	// Deleted with a long grace period: the API server keeps it,
	// terminating, until its kubelet confirms (never, here).
	grace := int64(3600)
	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, "stubborn", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.DeletePod(context.Background(), ns, "stubborn") })
	eventually(t, 10*time.Second, "the terminating pod to be refused", func() bool { return h.get(ip).Status == http.StatusNotFound })

	t.Run("a terminating pod's address is answered from the index", func(t *testing.T) {
		before := lists.n.Load()
		for range 50 {
			r := h.get(ip)
			if r.Status != http.StatusNotFound || !strings.Contains(r.Body["message"], "is being deleted") {
				t.Errorf("%d %v, want 404 saying the pod is being deleted", r.Status, r.Body)
				break
			}
		}
		if n := lists.n.Load() - before; n != 0 {
			t.Errorf("50 requests from a terminating pod's address cost %d LISTs, want 0", n)
		}
	})
	t.Run("an unknown address costs one LIST per window", func(t *testing.T) {
		unknown := addr(61, 0, 2)
		before := lists.n.Load()
		start := time.Now()
		for range 30 {
			if r := h.get(unknown); r.Status != http.StatusNotFound {
				t.Fatalf("%d %v, want 404", r.Status, r.Body)
			}
		}
		windows := 1 + int64(time.Since(start)/agent.LookupMissTTL)
		if n := lists.n.Load() - before; n > windows {
			t.Errorf("30 requests from one unknown address cost %d LISTs in %d window(s) of %s, want at most one per window", n, windows, agent.LookupMissTTL)
		}
	})
	t.Run("unknown addresses together stay within the lookup budget", func(t *testing.T) {
		before := lists.n.Load()
		start := time.Now()
		var wg sync.WaitGroup
		var throttled atomic.Int64
		for i := range 100 {
			wg.Go(func() {
				r := h.get(netip.AddrFrom4([4]byte{127, 61, 1, byte(i + 1)}))
				switch {
				case r.Status == http.StatusServiceUnavailable && r.Body["code"] == "PodLookupThrottled" && r.RetryAfter != "":
					throttled.Add(1)
				case r.Status != http.StatusNotFound:
					t.Errorf("%d %v, want 404, or 503 once the budget is spent", r.Status, r.Body)
				}
			})
		}
		wg.Wait()
		budget := int64(agent.LookupBurst + agent.LookupRate*time.Since(start).Seconds() + 1)
		if n := lists.n.Load() - before; n > budget {
			t.Errorf("100 unknown addresses cost %d LISTs, want at most the budget of %d", n, budget)
		}
		if throttled.Load() == 0 {
			t.Error("no request was told the lookups are used up")
		}
	})
}
