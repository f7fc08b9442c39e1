package integration

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

func status(t *testing.T, url string) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		return 0 // not listening
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// statusBody fetches url and returns its status and body (0 when nothing
// listens).
func statusBody(url string) (int, string) {
	res, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestReadinessAndGracefulDrain: /healthz and /readyz answer on their own
// listener; on shutdown the agent stops being ready and still completes a
// request that was waiting on STS.
func TestReadinessAndGracefulDrain(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, side: true, stsDelay: 2 * time.Second})
	side := h.agent.SideAddrs()
	healthz, readyz, metricsURL := "http://"+side[0].String()+"/healthz", "http://"+side[0].String()+"/readyz", "http://"+side[1].String()+"/metrics"
	if got := status(t, healthz); got != http.StatusOK {
		t.Fatalf("/healthz %d", got)
	}
	if got := status(t, readyz); got != http.StatusOK {
		t.Fatalf("/readyz %d on a synced, listening agent", got)
	}
	if got := status(t, metricsURL); got != http.StatusOK {
		t.Fatalf("/metrics %d", got)
	}
	if got := readyGauge(t, h); got != 1 {
		t.Fatalf("podcreds_ready %v on a ready agent, want 1", got)
	}

	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(26, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan reply, 1)
	go func() { inFlight <- h.get(ip) }() // joins the prefetch, held 2s by STS
	eventually(t, 10*time.Second, "the STS call to start", func() bool { return h.sts.calls.Load() == 1 })
	time.Sleep(100 * time.Millisecond) // let the request reach the handler

	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	eventually(t, 5*time.Second, "/readyz to stop answering 200", func() bool { return status(t, readyz) != http.StatusOK })
	if got := readyGauge(t, h); got != 0 {
		t.Errorf("podcreds_ready %v on a draining agent, want 0 (the alert PodcredsAgentNotReady reads it)", got)
	}
	if r := <-inFlight; r.Status != http.StatusOK {
		t.Fatalf("request in flight at shutdown answered %d %v, want 200", r.Status, r.Body)
	}
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop within its shutdown timeout")
	}
}

// readyGauge reads podcreds_ready from the agent's registry.
func readyGauge(t *testing.T, h *agentHarness) float64 {
	t.Helper()
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "podcreds_ready" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("the agent exports no podcreds_ready")
	return 0
}

// TestMetricsFollowPrometheusConventions lints every exported metric after
// real traffic (names, units, _total on counters, help text).
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(27, 0, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	h.get(ip)
	h.get(addr(27, 9, 9))
	problems, err := testutil.GatherAndLint(h.registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "endpoint", "code", "result":
				default:
					t.Errorf("metric %s has label %q: only bounded labels are allowed", f.GetName(), l.GetName())
				}
			}
		}
	}
}
