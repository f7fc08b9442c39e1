package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/podcreds/podcreds/bench/loadgen"
	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// churnConfig: rounds rounds of each of steady and churn, round long each,
// in ABBA order; during churn rounds rate pods/s are created, ask for
// credentials once and are deleted life after creation.
type churnConfig struct {
	rounds      int
	round       time.Duration
	rate        float64
	life        time.Duration
	hotPods     int
	concurrency int
	churnSAs    int
}

// churnResult is what the churn comparison measured.
type churnResult struct {
	cfg                     churnConfig
	steady, churn           loadgen.Series
	order                   []string // round order, for the plot
	created, deleted        int
	podErrors               int
	skipped                 int // ticks dropped because too many pods were in flight
	churnTime               time.Duration
	firstCreds              []time.Duration // churn pods: request start → 200
	retried                 map[int]int
	unserved                int
	stsCalls, tokenRequests float64 // during churn rounds
	steadyCPU, churnCPU     []cpuUse
	indexed, entries        float64 // the agent's pods and cache entries at the end
}

// runChurn compares the agent's hot path with and without pod churn on
// the node, in interleaved rounds of one session.
func runChurn(ctx context.Context, env *testenv.Env, logger *zap.Logger, cfg churnConfig) (*churnResult, error) {
	const ns, node = "churn", "churn-node"
	hotSA := func(i int) string { return fmt.Sprintf("hot-%d", i) }
	churnSA := func(i int) string { return fmt.Sprintf("churn-%02d", i) }
	role := func(int) string { return "arn:aws:iam::123456789012:role/churn" }
	if err := createServiceAccounts(ctx, env, ns, 4, hotSA, role); err != nil {
		return nil, err
	}
	if err := createServiceAccounts(ctx, env, ns, cfg.churnSAs, churnSA, role); err != nil {
		return nil, err
	}
	sts := fakests.New(time.Hour)
	sts.SetLatency(50 * time.Millisecond)
	a, err := startInproc(ctx, env, logger, agentSpec{node: node, sts: sts, rateLimit: -1})
	if err != nil {
		return nil, err
	}
	defer a.stop()

	hot := make([]netip.Addr, cfg.hotPods)
	for i := range hot {
		hot[i] = podAddr(20, i)
	}
	err = parallel(ctx, cfg.hotPods, 16, func(ctx context.Context, i int) error {
		p := pod{Namespace: ns, Name: fmt.Sprintf("hot-%02d", i), ServiceAccount: hotSA(i % 4), IP: hot[i]}
		if err := runPod(ctx, env, node, p); err != nil {
			return err
		}
		_, _, err := firstCredential(ctx, podClient(p.IP, false), a.url, time.Now().Add(20*time.Second))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("warming the hot pods: %w", err)
	}

	res := &churnResult{cfg: cfg, retried: map[int]int{}}
	res.steady.Name, res.churn.Name = "steady", "churn"
	ch := &churner{env: env, ns: ns, node: node, url: a.url, sa: churnSA, cfg: cfg, res: res}
	for r := range cfg.rounds {
		names := []string{"steady", "churn"}
		if r%2 == 1 {
			names = []string{"churn", "steady"}
		}
		for _, name := range names {
			lc := loadgen.Config{
				URL: a.url, KeepAlive: true, Concurrency: cfg.concurrency, Duration: cfg.round,
				MaxRequests: 50_000_000, Sources: rotate(hot, len(res.order)*cfg.concurrency),
			}
			var out loadgen.Result
			cpu0 := readCPU()
			if name == "churn" {
				sts0, tr0 := float64(sts.Calls.Load()), a.counter("podcreds_tokenrequest_requests_total", nil)
				out, err = ch.during(ctx, func() (loadgen.Result, error) { return loadgen.Run(ctx, lc) })
				res.stsCalls += float64(sts.Calls.Load()) - sts0
				res.tokenRequests += a.counter("podcreds_tokenrequest_requests_total", nil) - tr0
				res.churn.Results = append(res.churn.Results, out)
				res.churnCPU = append(res.churnCPU, readCPU().since(cpu0))
			} else {
				out, err = loadgen.Run(ctx, lc)
				res.steady.Results = append(res.steady.Results, out)
				res.steadyCPU = append(res.steadyCPU, readCPU().since(cpu0))
			}
			if err != nil {
				return nil, err
			}
			res.order = append(res.order, name)
			fmt.Printf("churn: round %d/%d %-6s %8.0f req/s  p99 %-8s errors %d\n", r+1, cfg.rounds, name, out.RPS, fmtDur(out.P99), out.Errors)
			time.Sleep(time.Second) // let the last deletions' events drain
		}
	}
	res.indexed, res.entries = a.counter("podcreds_pods_indexed", nil), a.counter("podcreds_cache_entries", nil)
	return res, nil
}

// rotate returns s rotated left by k, so that successive rounds' workers
// start from different pods.
func rotate[T any](s []T, k int) []T {
	if len(s) == 0 {
		return s
	}
	k %= len(s)
	return append(append([]T(nil), s[k:]...), s[:k]...)
}

// churner creates and deletes pods on the node while a load round runs.
type churner struct {
	env         *testenv.Env
	ns, node    string
	url         string
	sa          func(int) string
	cfg         churnConfig
	res         *churnResult
	next        int // index of the next churn pod over the whole run
	mu          sync.Mutex
	inFlight    atomic.Int64
	maxInFlight int64
}

// during runs load while creating cfg.rate pods/s, and returns once load
// has returned and every pod it created has been deleted.
func (c *churner) during(ctx context.Context, load func() (loadgen.Result, error)) (loadgen.Result, error) {
	if c.maxInFlight == 0 {
		c.maxInFlight = int64(4*c.cfg.rate*c.cfg.life.Seconds()) + 50
	}
	stop := make(chan struct{})
	var pods sync.WaitGroup
	began := time.Now()
	ticker := time.NewTicker(time.Duration(float64(time.Second) / c.cfg.rate))
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			if c.inFlight.Load() >= c.maxInFlight {
				c.mu.Lock()
				c.res.skipped++
				c.mu.Unlock()
				continue
			}
			k := c.next
			c.next++
			c.inFlight.Add(1)
			pods.Go(func() { defer c.inFlight.Add(-1); c.lifecycle(ctx, k) })
		}
	}()
	out, err := load()
	close(stop)
	<-done
	c.res.churnTime += time.Since(began)
	pods.Wait()
	return out, err
}

// lifecycle is one churn pod: created and running, one credential request
// from its address, deleted life after it was created.
func (c *churner) lifecycle(ctx context.Context, k int) {
	p := pod{Namespace: c.ns, Name: fmt.Sprintf("churn-%05d", k), ServiceAccount: c.sa(k % c.cfg.churnSAs), IP: podAddr(21, k)}
	created := time.Now()
	if err := runPod(ctx, c.env, c.node, p); err != nil {
		c.mu.Lock()
		c.res.podErrors++
		c.mu.Unlock()
		_ = c.env.DeletePod(context.WithoutCancel(ctx), p.Namespace, p.Name)
		return
	}
	began := time.Now()
	ans, fails, err := firstCredential(ctx, podClient(p.IP, false), c.url, began.Add(10*time.Second))
	c.mu.Lock()
	c.res.created++
	for _, s := range fails {
		c.res.retried[s]++
	}
	if err != nil {
		c.res.unserved++
	} else {
		c.res.firstCreds = append(c.res.firstCreds, ans.Received.Sub(began))
	}
	c.mu.Unlock()
	select {
	case <-time.After(time.Until(created.Add(c.cfg.life))):
	case <-ctx.Done():
	}
	if err := c.env.DeletePod(context.WithoutCancel(ctx), p.Namespace, p.Name); err != nil {
		c.mu.Lock()
		c.res.podErrors++
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.res.deleted++
	c.mu.Unlock()
}

func (r *churnResult) ratio() loadgen.Ratio {
	return loadgen.Compare(r.churn.Summary(), r.steady.Summary())
}

func (r *churnResult) tables() []table {
	c := r.cfg
	s, ch := r.steady.Summary(), r.churn.Summary()
	ratio := r.ratio()
	row := func(name string, m loadgen.Summary, cpu []cpuUse) []string {
		u := medianUse(cpu)
		return []string{name, fmt.Sprint(m.Rounds), fmt.Sprintf("%.0f", m.RPS), fmtDur(m.P50), fmtDur(m.P99), fmt.Sprint(m.Errors),
			fmt.Sprintf("%.2f", u.self), fmt.Sprintf("%.2f", u.other)}
	}
	load := table{
		Title:  fmt.Sprintf("Churn: hot path with and without %.0f pods/s created and deleted (%d × %s rounds each, ABBA)", c.rate, c.rounds, c.round),
		Header: []string{"run", "rounds", "req/s", "p50", "p99", "errors", "cores: bench process", "cores: rest of machine"},
		Rows: [][]string{
			row("steady", s, r.steadyCPU), row("churn", ch, r.churnCPU),
			{"churn / steady", "", fmt.Sprintf("%.2fx", ratio.RPS), fmt.Sprintf("%.2fx", ratio.P50), fmt.Sprintf("%.2fx", ratio.P99), ""},
		},
		Notes: []string{
			fmt.Sprintf("Load: loadgen, keep-alive, %d connections from %d long-lived pods' addresses (4 ServiceAccounts), closed loop; medians over rounds.", c.concurrency, c.hotPods),
			"Agent, load generator, churn driver, kube-apiserver and etcd share the machine's CPUs: the churn rows pay for the API server's work too.",
			"Cores (median per round, from /proc): \"bench process\" is agent + load generator + churn driver (one process); \"rest of machine\" is kube-apiserver, etcd, MinIO and anything else running.",
		},
	}
	rate := float64(r.created) / r.churnTime.Seconds()
	pods := table{
		Title:  "Churn: the churning pods",
		Header: []string{"figure", "value"},
		Rows: [][]string{
			{"pods created / deleted", fmt.Sprintf("%d / %d in %s (%.1f/s)", r.created, r.deleted, r.churnTime.Round(time.Second), rate)},
			{"pod lifetime; ServiceAccounts", fmt.Sprintf("%s; %d", c.life, c.churnSAs)},
			{"API errors; ticks skipped (too many in flight)", fmt.Sprintf("%d; %d", r.podErrors, r.skipped)},
			{"first request → 200 (p50 / p99 / max)", durs3(r.firstCreds)},
			{"churn pods never served", fmt.Sprint(r.unserved)},
			{"retried answers", statusCounts(r.retried)},
			{"STS calls / TokenRequests during churn", fmt.Sprintf("%.0f / %.0f", r.stsCalls, r.tokenRequests)},
			{"agent at the end: pods indexed / cache entries", fmt.Sprintf("%.0f / %.0f (the %d long-lived pods, %d ServiceAccounts)", r.indexed, r.entries, c.hotPods, 4)},
		},
	}
	return []table{load, pods}
}

func (r *churnResult) checks() []check {
	s, ch := r.steady.Summary(), r.churn.Summary()
	ratio := r.ratio()
	return []check{
		{"churn", "hot p99 steady → churn", fmt.Sprintf("%s → %s (%.2fx)", fmtDur(s.P99), fmtDur(ch.P99), ratio.P99), "", ""},
		{"churn", "hot req/s steady → churn", fmt.Sprintf("%.0f → %.0f (%.2fx)", s.RPS, ch.RPS, ratio.RPS), "", ""},
		{"churn", "hot-path errors", fmt.Sprint(s.Errors + ch.Errors), "= 0", verdict(s.Errors+ch.Errors == 0)},
		{"churn", "churn pods served", fmt.Sprintf("%d/%d", r.created-r.unserved, r.created), fmt.Sprintf("= %d", r.created), verdict(r.unserved == 0)},
	}
}
