package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// warmConfig: an agent starting (an upgrade, a restart) on a node that
// already runs pods in serviceAccounts, against an STS answering in latency,
// starts times over.
type warmConfig struct {
	pods, serviceAccounts, starts int
	latency                       time.Duration
}

// warmResult is what the warm starts measured.
type warmResult struct {
	cfg      warmConfig
	toWarm   []time.Duration // per start: Run begins → warm, listening, ready
	stsCalls []int           // per start
	entries  []int           // per start: credential entries once warm
	hits     []float64       // per start: first request per pod right after warm that were hits
}

// runWarmStart creates the pods first, then starts a fresh in-process agent
// for their node starts times, each measured from the moment it is built
// to the moment it is ready (warm: every pod's credentials fetched, and in
// the listening group), then asks once from every pod to check it was warm.
func runWarmStart(ctx context.Context, env *testenv.Env, logger *zap.Logger, cfg warmConfig) (*warmResult, error) {
	const ns, node = "warmstart", "warmstart-node"
	sa := func(i int) string { return fmt.Sprintf("sa-%02d", i) }
	role := func(int) string { return "arn:aws:iam::123456789012:role/warmstart" }
	if err := createServiceAccounts(ctx, env, ns, cfg.serviceAccounts, sa, role); err != nil {
		return nil, err
	}
	pods := make([]pod, cfg.pods)
	for i := range pods {
		pods[i] = pod{Namespace: ns, Name: fmt.Sprintf("warm-%03d", i), ServiceAccount: sa(i % cfg.serviceAccounts), IP: podAddr(12, i)}
	}
	if err := parallel(ctx, len(pods), 25, func(pctx context.Context, i int) error { return runPod(pctx, env, node, pods[i]) }); err != nil {
		return nil, err
	}
	res := &warmResult{cfg: cfg}
	for range cfg.starts {
		sts := fakests.New(time.Hour)
		sts.SetLatency(cfg.latency)
		began := time.Now()
		a, err := startInproc(ctx, env, logger, agentSpec{node: node, sts: sts})
		if err != nil {
			return nil, err
		}
		res.toWarm = append(res.toWarm, time.Since(began))
		res.stsCalls = append(res.stsCalls, int(sts.Calls.Load()))
		res.entries = append(res.entries, a.Cache.Len())
		err = parallel(ctx, len(pods), 25, func(pctx context.Context, i int) error {
			_, err := fetchCredentials(pctx, podClient(pods[i].IP, false), a.url)
			return err
		})
		res.hits = append(res.hits, a.counter("podcreds_cache_requests_total", map[string]string{"result": "hit"}))
		a.stop()
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (r *warmResult) allWarm() bool {
	for i := range r.toWarm {
		if r.stsCalls[i] != r.cfg.serviceAccounts || r.entries[i] != r.cfg.serviceAccounts || int(r.hits[i]) != r.cfg.pods {
			return false
		}
	}
	return len(r.toWarm) > 0
}

func (r *warmResult) tables() []table {
	c := r.cfg
	t := table{
		Title:  fmt.Sprintf("Warm start: an agent starting on a node with %d pods in %d ServiceAccounts, STS latency %s, %d starts", c.pods, c.serviceAccounts, c.latency, c.starts),
		Header: []string{"start", "start → warm and serving", "STS calls", "credential entries", "first requests that were hits"},
	}
	for i, d := range r.toWarm {
		t.Rows = append(t.Rows, []string{fmt.Sprint(i + 1), fmtDur(d), fmt.Sprint(r.stsCalls[i]), fmt.Sprint(r.entries[i]), fmt.Sprintf("%.0f of %d", r.hits[i], c.pods)})
	}
	t.Rows = append(t.Rows, []string{"median", fmtDur(quantile(r.toWarm, .5)), "", "", ""})
	t.Notes = []string{
		fmt.Sprintf("In-process agent (stack.Build) with the binary's defaults (kube client %d QPS / burst %d, STS budget %d/s burst %d); the STS is the in-process fake answering after %s. Measured from building the agent to Ready: informer synced, every pod's credentials fetched (warm), listeners bound.",
			binaryClientQPS, binaryClientBurst, binarySTSRate, binarySTSBurst, c.latency),
		"Each start is a fresh agent against the same pods; the first request of every pod right after it is then answered from the cache.",
	}
	return []table{t}
}

func (r *warmResult) checks() []check {
	return []check{
		{"warmstart", "start → warm (median)", fmtDur(quantile(r.toWarm, .5)), "", ""},
		{"warmstart", "every pod's first request after warm-up a hit", fmt.Sprint(r.allWarm()), "= true", verdict(r.allWarm())},
	}
}
