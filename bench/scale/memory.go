package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// rssGoal is issue 7's memory goal for a node with 250 pods.
const rssGoal = 20 << 20

// heldLimit is the soft memory limit (GOMEMLIMIT) of the run that shows how
// far tuning the Go collector alone brings the agent down: below the heap
// goal GOGC=100 sets, so the collector runs far more often.
const heldLimit = 8 << 20

// memoryConfig: the real agent binary on a node of pods[0] pods, then on a
// node of pods[1] pods, all in serviceAccounts ServiceAccounts.
type memoryConfig struct {
	agentBin        string
	floors          []floorBuild // bench/scale/floor, whole and without one library or two
	serviceAccounts int
	pods            [2]int
	outDir          string
}

// floorBuild is one variant of bench/scale/floor.
type floorBuild struct {
	label, plot string // table row, and plot bar
	tags        string // BUILD_TAGS
	bin         string
}

// floorBuilds: the whole floor first; each other variant leaves out what its
// tags name, so its difference to the first is that library's share.
func floorBuilds(dir string) []floorBuild {
	fs := []floorBuild{
		{label: "floor: libraries only", plot: "floor"},
		{label: "floor without client_golang", plot: "-prom", tags: "floor_noprom"},
		{label: "floor without the STS client", plot: "-sts", tags: "floor_nosts"},
		{label: "floor without either", plot: "-both", tags: "floor_noprom floor_nosts"},
	}
	for i := range fs {
		fs[i].bin = filepath.Join(dir, fmt.Sprintf("floor-%d", i))
	}
	return fs
}

// memSample is one reading of the agent process.
type memSample struct {
	label                              string
	pods, serviceAccounts              int
	rss, peakRSS, heapAlloc, heapInuse float64    // bytes
	rssAnon, rssFile                   float64    // RSS split: private memory, and mapped file pages (the binary)
	binary                             binaryMaps // the binary's own mappings, resident of size
	goroutines, entries, indexed       float64
	servedIn                           time.Duration // until every pod had been served once
	floor                              int           // 1 + index into memoryConfig.floors; 0: the agent
	plot                               string        // the bar's label
	memLimit                           int64         // GOMEMLIMIT, bytes; 0: none
}

type memoryResult struct {
	cfg     memoryConfig
	samples []memSample
}

// runMemory measures the agent binary as its own process, against MinIO's
// real STS: idle, then with pods[0] pods each in its own ServiceAccount
// (pods created while it runs); restarted onto those pods, as it ships and
// with its collector held to heldLimit; then restarted onto a node already
// running pods[1] pods. Each sample follows serving every pod once.
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
	res := &memoryResult{cfg: cfg}
	podsOn := func(node string, block byte, n int) []pod {
		ps := make([]pod, n)
		for i := range ps {
			ps[i] = pod{Namespace: ns, Name: fmt.Sprintf("%s-%04d", node, i), ServiceAccount: sa(i % cfg.serviceAccounts), IP: podAddr(block, i)}
		}
		return ps
	}

	// The floors: the dependency set alone, initialised and idle.
	for i, fb := range cfg.floors {
		floor, err := startFloor(ctx, cfg, fb, kubeconfig)
		if err != nil {
			return nil, err
		}
		fs, err := floor.settledSample(fb.label, 0, 0, 0)
		fs.floor, fs.plot = i+1, fb.plot
		floor.stop()
		if err != nil {
			return nil, err
		}
		res.samples = append(res.samples, fs)
	}

	// Pods arriving on a running agent.
	node := fmt.Sprintf("mem-%d", cfg.pods[0])
	ag, err := startBinary(ctx, env, cfg, kubeconfig, node, 0)
	if err != nil {
		return nil, err
	}
	idle, err := ag.sample("idle", 0, 0)
	idle.plot = "idle"
	if err != nil {
		ag.stop()
		return nil, err
	}
	res.samples = append(res.samples, idle)
	pods := podsOn(node, 40, cfg.pods[0])
	began := time.Now()
	err = parallel(ctx, len(pods), 25, func(ctx context.Context, i int) error { return runPod(ctx, env, node, pods[i]) })
	if err == nil {
		err = serveAll(ctx, ag.url, pods)
	}
	if err != nil {
		ag.stop()
		return nil, err
	}
	label := func(n int) string { return fmt.Sprintf("%d pods / %d SAs", n, min(n, cfg.serviceAccounts)) }
	s, err := ag.settledSample(label(cfg.pods[0]), cfg.pods[0], min(cfg.pods[0], cfg.serviceAccounts), time.Since(began))
	s.plot = fmt.Sprint(cfg.pods[0])
	ag.stop()
	if err != nil {
		return nil, err
	}
	res.samples = append(res.samples, s)

	// An agent (re)starting onto a node that already runs every pod.
	restart := func(node string, pods []pod, memLimit int64, label, plot string) error {
		began := time.Now()
		ag, err := startBinary(ctx, env, cfg, kubeconfig, node, memLimit)
		if err != nil {
			return err
		}
		defer ag.stop()
		if err := serveAll(ctx, ag.url, pods); err != nil {
			return err
		}
		s, err := ag.settledSample(label, len(pods), min(len(pods), cfg.serviceAccounts), time.Since(began))
		s.plot, s.memLimit = plot, memLimit
		if err != nil {
			return err
		}
		res.samples = append(res.samples, s)
		return nil
	}
	if err := restart(node, pods, 0, label(cfg.pods[0])+", restarted", fmt.Sprintf("%dr", cfg.pods[0])); err != nil {
		return nil, err
	}
	if err := restart(node, pods, heldLimit, fmt.Sprintf("%s, restarted, GOMEMLIMIT=%s", label(cfg.pods[0]), fmtMiB(heldLimit)), fmt.Sprintf("lim%d", heldLimit>>20)); err != nil {
		return nil, err
	}
	node = fmt.Sprintf("mem-%d", cfg.pods[1])
	pods = podsOn(node, 41, cfg.pods[1])
	if err := parallel(ctx, len(pods), 25, func(ctx context.Context, i int) error { return runPod(ctx, env, node, pods[i]) }); err != nil {
		return nil, err
	}
	if err := restart(node, pods, 0, label(cfg.pods[1])+", restarted", fmt.Sprintf("%dr", cfg.pods[1])); err != nil {
		return nil, err
	}
	return res, nil
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
		Header: []string{"state", "entries", "pods indexed", "RSS", "anon", "file", "peak RSS", "heap alloc", "heap in-use", "goroutines", "all served in"},
		Notes: []string{
			fmt.Sprintf("Goal: ≤ %s RSS at %d pods / %d ServiceAccounts. RSS is VmRSS from /proc/<pid>/status (anon: RssAnon, the process's own memory; file: RssFile, pages of the binary and libraries mapped in), peak VmHWM; heap figures from the agent's /metrics (go_memstats_*), 2 s after the last pod was served.", fmtMiB(rssGoal), r.cfg.pods[0], min(r.cfg.pods[0], r.cfg.serviceAccounts)),
			"A \"restarted\" agent started onto a node already running its pods: \"all served in\" runs from its start.",
			fmt.Sprintf("GOMEMLIMIT=%s holds the Go collector to a soft limit below the heap goal GOGC=100 sets, so it collects far more often: how low tuning the runtime alone takes the anon column (its CPU cost is not measured here). It cannot touch the file column.", fmtMiB(heldLimit)),
			"floor: bench/scale/floor, built the same way — the agent's dependency set (client-go, aws-sdk-go-v2 STS, prometheus/client_golang, zap) linked as an agent links it and initialised, serving /metrics and nothing else. The variants leave out client_golang (serving /metrics from runtime.MemStats by hand) or the STS client, or both: their difference to the whole floor is that library's share. Nearly every page of a Go binary is mapped in once it runs (the kernel maps neighbouring pages on each fault), so the file column follows binary size.",
		},
	}
	for _, s := range r.samples {
		if s.binary.textSize > 0 && s.pods == r.cfg.pods[0] && s.servedIn > 0 && s.memLimit == 0 {
			t.Notes = append(t.Notes, fmt.Sprintf("Of the agent's binary at %s, resident: text %s of %s (%.0f %%), read-only data %s of %s (%.0f %%) — from /proc/<pid>/smaps.",
				s.label, fmtMiB(s.binary.textRSS), fmtMiB(s.binary.textSize), 100*s.binary.textRSS/s.binary.textSize,
				fmtMiB(s.binary.roRSS), fmtMiB(s.binary.roSize), 100*s.binary.roRSS/s.binary.roSize))
		}
	}
	for _, s := range r.samples {
		served := ""
		if s.servedIn > 0 {
			served = fmtDur(s.servedIn)
		}
		t.Rows = append(t.Rows, []string{s.label, fmt.Sprintf("%.0f", s.entries), fmt.Sprintf("%.0f", s.indexed), fmtMiB(s.rss), fmtMiB(s.rssAnon), fmtMiB(s.rssFile), fmtMiB(s.peakRSS),
			fmtMiB(s.heapAlloc), fmtMiB(s.heapInuse), fmt.Sprintf("%.0f", s.goroutines), served})
	}
	return []table{t}
}

func (r *memoryResult) checks() []check {
	var out []check
	var floor memSample
	for _, s := range r.samples {
		if s.floor > 0 {
			c := check{Scenario: "memory", Figure: "RSS (anon / file), " + s.label, Measured: fmt.Sprintf("%s (%s / %s)", fmtMiB(s.rss), fmtMiB(s.rssAnon), fmtMiB(s.rssFile))}
			if s.floor == 1 {
				floor = s
			} else if floor.floor == 1 {
				c.Measured += fmt.Sprintf("; %s below the whole floor", fmtMiB(floor.rss-s.rss))
			}
			out = append(out, c)
		}
		if s.pods == 0 {
			continue
		}
		c := check{Scenario: "memory", Figure: "RSS / heap in-use, " + s.label, Measured: fmt.Sprintf("%s / %s", fmtMiB(s.rss), fmtMiB(s.heapInuse))}
		if floor.floor == 1 {
			c.Measured += fmt.Sprintf("; %s above the floor", fmtMiB(s.rss-floor.rss))
		}
		if s.pods == r.cfg.pods[0] && s.memLimit == 0 {
			c.Goal = "RSS ≤ " + fmtMiB(rssGoal)
			c.Verdict = "MISSES"
			if s.rss <= rssGoal {
				c.Verdict = "MEETS"
			}
		}
		out = append(out, c)
	}
	return out
}
