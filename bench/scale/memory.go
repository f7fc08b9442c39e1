package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// rssGoal is the project's memory goal (issue 18): RSS of an agent serving
// 1000 pods in 250 ServiceAccounts.
const rssGoal = 32 << 20

// memoryConfig: the real agent binary on a node of pods[0] pods and on one
// of pods[1] pods, all in serviceAccounts ServiceAccounts.
type memoryConfig struct {
	agentBin        string
	serviceAccounts int
	pods            [2]int
	outDir          string
	libs            []libraryCost // what each library adds to the binary
}

// memSample is one reading of the agent process, after forced collections.
type memSample struct {
	label, plot                  string // table row, plot bar
	pods                         int
	rss, peakRSS                 float64 // bytes
	rssAnon, rssFile             float64 // RSS split: private memory, and mapped file pages (the binary)
	heapLive, heapInuse          float64 // marked live by the last GC; in use (live and garbage)
	binary                       binaryMaps
	goroutines, entries, indexed float64
	servedIn                     time.Duration // until every pod had been served once
}

type memoryResult struct {
	cfg     memoryConfig
	samples []memSample
	// perPod and perEntry are live-heap bytes per pod known and served
	// (two pod counts, same entries) and per credential entry (two entry
	// counts, same pods); goal is the sample held to rssGoal.
	perPod, perEntry float64
	goal             memSample
}

// runMemory measures the agent binary as its own process against MinIO's
// real STS, each agent started onto a node already running its pods (a
// restart, the common case): idle; pods[0] pods, one per ServiceAccount;
// pods[1] pods in the same ServiceAccounts; pods[0] pods in a fifth of them.
// Agents fetch credentials for the pods they know on their own, so entries
// follow the ServiceAccounts on the node, not the pods served.
func runMemory(ctx context.Context, env *testenv.Env, cfg memoryConfig) (*memoryResult, error) {
	const ns = "memory"
	sa := func(i int) string { return fmt.Sprintf("sa-%03d", i) }
	if err := createServiceAccounts(ctx, env, ns, cfg.serviceAccounts, sa, func(int) string { return env.RoleARN }); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(env.Dir, "scale-agent.kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig, ""); err != nil {
		return nil, err
	}
	fewer := cfg.serviceAccounts / 5
	nodes := []struct {
		name      string
		block     byte
		pods, sas int
		plot      string
	}{
		{name: "mem-idle", plot: "idle"},
		{name: "mem-small", block: 40, pods: cfg.pods[0], sas: cfg.serviceAccounts, plot: fmt.Sprintf("%d/%d", cfg.pods[0], cfg.serviceAccounts)},
		{name: "mem-large", block: 41, pods: cfg.pods[1], sas: cfg.serviceAccounts, plot: fmt.Sprintf("%d/%d", cfg.pods[1], cfg.serviceAccounts)},
		{name: "mem-fewer", block: 42, pods: cfg.pods[0], sas: fewer, plot: fmt.Sprintf("%d/%d", cfg.pods[0], fewer)},
	}
	res := &memoryResult{cfg: cfg}
	for _, n := range nodes {
		pods := make([]pod, n.pods)
		for i := range pods {
			pods[i] = pod{Namespace: ns, Name: fmt.Sprintf("%s-%04d", n.name, i), ServiceAccount: sa(i % n.sas), IP: podAddr(n.block, i)}
		}
		if err := parallel(ctx, n.pods, 25, func(ctx context.Context, i int) error { return runPod(ctx, env, n.name, pods[i]) }); err != nil {
			return nil, err
		}
		began := time.Now()
		ag, err := startBinary(ctx, env, cfg, kubeconfig, n.name)
		if err != nil {
			return nil, err
		}
		label := fmt.Sprintf("%d pods in %d ServiceAccounts", n.pods, n.sas)
		if n.pods == 0 {
			label = "idle, no pods"
		}
		err = serveAll(ctx, ag.url, pods)
		var s memSample
		if err == nil {
			s, err = ag.settledSample(label, n.pods, n.sas, time.Since(began))
		}
		ag.stop()
		if err != nil {
			return nil, err
		}
		s.plot = n.plot
		if n.pods == 0 {
			s.servedIn = 0
		}
		res.samples = append(res.samples, s)
	}
	res.derive(res.samples[1], res.samples[2], res.samples[3])
	return res, nil
}

// derive computes the per-pod and per-entry heap from three samples: small
// and large have the same entries and different pods; small and fewer the
// same pods and different entries. large is held to the goal.
func (r *memoryResult) derive(small, large, fewer memSample) {
	r.goal = large
	r.perPod = (large.heapLive - small.heapLive) / float64(large.pods-small.pods)
	r.perEntry = (small.heapLive - fewer.heapLive) / (small.entries - fewer.entries)
}

// serveAll has every pod fetch credentials once, as its SDK would.
func serveAll(ctx context.Context, url string, pods []pod) error {
	return parallel(ctx, len(pods), 16, func(ctx context.Context, i int) error {
		_, _, err := firstCredential(ctx, podClient(pods[i].IP, false), url, time.Now().Add(90*time.Second))
		if err != nil {
			return fmt.Errorf("pod %s: %w", pods[i].Name, err)
		}
		return nil
	})
}

func (r *memoryResult) tables() []table {
	t := table{
		Title:  "Memory: the agent binary as its own process (MinIO STS)",
		Header: []string{"state", "entries", "pods indexed", "RSS", "anon", "file", "peak RSS", "heap live", "heap in-use", "goroutines", "all served in"},
		Notes: []string{
			fmt.Sprintf("Goal: RSS ≤ %s at %d pods in %d ServiceAccounts. RSS is VmRSS from /proc/<pid>/status (anon: RssAnon, the process's own memory; file: RssFile, the binary's pages), peak VmHWM. Heap live is go_gc_heap_live_bytes, what a collection marked live: the least of four that /metrics scrapes forced; heap in-use (go_memstats_heap_inuse_bytes) also holds garbage.", fmtMiB(rssGoal), r.cfg.pods[1], r.cfg.serviceAccounts),
			"Every agent started onto a node already running its pods; \"all served in\" runs from its start. An agent fetches credentials for the pods it knows by itself: entries follow the ServiceAccounts on the node.",
			fmt.Sprintf("Heap per pod: live heap with %d pods minus with %d, both in %d ServiceAccounts, over the difference in pods: %s per pod (informer object, address index, what serving it keeps).", r.cfg.pods[1], r.cfg.pods[0], r.cfg.serviceAccounts, fmtBytes(r.perPod)),
			fmt.Sprintf("Heap per credential entry: live heap of %d pods in %d ServiceAccounts minus in %d, over the difference in entries: %s per entry (credentials, their token, the ServiceAccount read).", r.cfg.pods[0], r.cfg.serviceAccounts, r.cfg.serviceAccounts/5, fmtBytes(r.perEntry)),
		},
	}
	for _, s := range r.samples {
		if s.binary.textSize > 0 && s.label == r.goal.label {
			t.Notes = append(t.Notes, fmt.Sprintf("Of the agent's binary at %s, resident: text %s of %s (%.0f %%), read-only data %s of %s (%.0f %%), from /proc/<pid>/smaps: the file column follows binary size.",
				s.label, fmtMiB(s.binary.textRSS), fmtMiB(s.binary.textSize), 100*s.binary.textRSS/s.binary.textSize,
				fmtMiB(s.binary.roRSS), fmtMiB(s.binary.roSize), 100*s.binary.roRSS/s.binary.roSize))
			break
		}
	}
	for _, s := range r.samples {
		served := ""
		if s.servedIn > 0 {
			served = fmtDur(s.servedIn)
		}
		t.Rows = append(t.Rows, []string{s.label, fmt.Sprintf("%.0f", s.entries), fmt.Sprintf("%.0f", s.indexed), fmtMiB(s.rss), fmtMiB(s.rssAnon), fmtMiB(s.rssFile), fmtMiB(s.peakRSS),
			fmtMiB(s.heapLive), fmtMiB(s.heapInuse), fmt.Sprintf("%.0f", s.goroutines), served})
	}
	return append([]table{t}, librariesTable(r.cfg.libs))
}

func (r *memoryResult) checks() []check {
	g := r.goal
	c := check{Scenario: "memory", Figure: fmt.Sprintf("RSS (anon / file), %s", g.label),
		Measured: fmt.Sprintf("%s (%s / %s)", fmtMiB(g.rss), fmtMiB(g.rssAnon), fmtMiB(g.rssFile)), Goal: "≤ " + fmtMiB(rssGoal), Verdict: "MISSES"}
	if g.rss > 0 && g.rss <= rssGoal {
		c.Verdict = "MEETS"
	}
	return []check{c,
		{Scenario: "memory", Figure: "live heap per pod", Measured: fmtBytes(r.perPod)},
		{Scenario: "memory", Figure: "live heap per credential entry", Measured: fmtBytes(r.perEntry)},
	}
}

// fmtBytes prints a small byte count in bytes or KiB.
func fmtBytes(b float64) string {
	if b < 10<<10 && b > -10<<10 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.1f KiB", b/(1<<10))
}
