package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// stormConfig: pods in serviceAccounts, each pod sending perPod concurrent
// first requests as soon as it runs, against an STS answering in latency.
type stormConfig struct {
	pods, serviceAccounts, perPod int
	latency                       time.Duration
}

// stormResult is what the cold storm measured.
type stormResult struct {
	cfg                              stormConfig
	stsCalls, tokenRequests          int
	hits, misses, coalesced          float64
	failedAttempts                   map[int]int
	failedPods                       int
	creationToRunning, createToCreds []time.Duration // per pod
	requestToCreds                   []time.Duration // per request
	spread                           time.Duration   // first creation to last credential
}

// runStorm starts a cold agent, then creates every pod at once (25 at a
// time, as a scale-up hits the API server) and, the moment each pod is
// running, sends its first requests concurrently from its address.
func runStorm(ctx context.Context, env *testenv.Env, logger *zap.Logger, cfg stormConfig) (*stormResult, error) {
	const ns, node = "storm", "storm-node"
	sa := func(i int) string { return fmt.Sprintf("sa-%02d", i) }
	role := func(int) string { return "arn:aws:iam::123456789012:role/storm" }
	if err := createServiceAccounts(ctx, env, ns, cfg.serviceAccounts, sa, role); err != nil {
		return nil, err
	}
	sts := fakests.New(time.Hour)
	sts.SetLatency(cfg.latency)
	a, err := startInproc(ctx, env, logger, agentSpec{node: node, sts: sts})
	if err != nil {
		return nil, err
	}
	defer a.stop()

	res := &stormResult{cfg: cfg, failedAttempts: map[int]int{}}
	var mu sync.Mutex // guards res's slices and maps while the storm runs
	var requests sync.WaitGroup
	start := time.Now()
	var last time.Time
	// The requests outlive parallel's context, which ends when the last pod
	// is created: they run under ctx.
	err = parallel(ctx, cfg.pods, 25, func(pctx context.Context, i int) error {
		p := pod{Namespace: ns, Name: fmt.Sprintf("storm-%03d", i), ServiceAccount: sa(i % cfg.serviceAccounts), IP: podAddr(10, i)}
		created := time.Now()
		if err := runPod(pctx, env, node, p); err != nil {
			return err
		}
		running := time.Now()
		requests.Go(func() {
			first := stormPod(ctx, a.url, p, cfg.perPod, res, &mu)
			mu.Lock()
			defer mu.Unlock()
			res.creationToRunning = append(res.creationToRunning, running.Sub(created))
			if first.IsZero() {
				res.failedPods++
				return
			}
			res.createToCreds = append(res.createToCreds, first.Sub(created))
			last = later(last, first)
		})
		return nil
	})
	requests.Wait()
	if err != nil {
		return nil, err
	}
	res.spread = last.Sub(start)
	// Nothing refreshes within an hour; a short pause lets a straggling
	// fetch land in the counters.
	time.Sleep(500 * time.Millisecond)
	res.stsCalls = int(sts.Calls.Load())
	res.tokenRequests = int(a.counter("podcreds_tokenrequest_requests_total", nil))
	res.hits = a.counter("podcreds_cache_requests_total", map[string]string{"result": "hit"})
	res.misses = a.counter("podcreds_cache_requests_total", map[string]string{"result": "miss"})
	res.coalesced = a.counter("podcreds_cache_requests_total", map[string]string{"result": "coalesced"})
	return res, nil
}

// stormPod sends perPod concurrent first requests from p's address, each
// retrying as an SDK does, and returns when the first 200 arrived (zero if
// none did).
func stormPod(ctx context.Context, url string, p pod, perPod int, res *stormResult, mu *sync.Mutex) time.Time {
	var first time.Time
	var wg sync.WaitGroup
	for range perPod {
		wg.Go(func() {
			c := podClient(p.IP, false)
			began := time.Now()
			ans, fails, err := firstCredential(ctx, c, url, began.Add(20*time.Second))
			mu.Lock()
			defer mu.Unlock()
			for _, s := range fails {
				res.failedAttempts[s]++
			}
			if err != nil {
				return
			}
			res.requestToCreds = append(res.requestToCreds, ans.Received.Sub(began))
			if first.IsZero() || ans.Received.Before(first) {
				first = ans.Received
			}
		})
	}
	wg.Wait()
	return first
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (r *stormResult) tables() []table {
	c := r.cfg
	t := table{
		Title:  fmt.Sprintf("Cold storm: %d pods in %d ServiceAccounts, %d concurrent first requests each, STS latency %s", c.pods, c.serviceAccounts, c.perPod, c.latency),
		Header: []string{"figure", "value", "expected"},
		Rows: [][]string{
			{"STS calls", fmt.Sprint(r.stsCalls), fmt.Sprintf("%d (one per ServiceAccount) %s", c.serviceAccounts, verdict(r.stsCalls == c.serviceAccounts))},
			{"TokenRequests", fmt.Sprint(r.tokenRequests), fmt.Sprint(c.serviceAccounts)},
			{"requests answered 200", fmt.Sprintf("%d of %d", len(r.requestToCreds), c.pods*c.perPod), ""},
			{"pods without credentials", fmt.Sprint(r.failedPods), "0"},
			{"retried answers (SDK retries)", statusCounts(r.failedAttempts), ""},
			{"cache lookups hit / miss / coalesced", fmt.Sprintf("%.0f / %.0f / %.0f", r.hits, r.misses, r.coalesced), ""},
			{"pod created → running (p50 / p99)", fmt.Sprintf("%s / %s", fmtDur(quantile(r.creationToRunning, .5)), fmtDur(quantile(r.creationToRunning, .99))), ""},
			{"pod created → first credential (p50 / p99 / max)", durs3(r.createToCreds), ""},
			{"request start → 200 (p50 / p99 / max)", durs3(r.requestToCreds), ""},
			{"first pod created → last pod served", fmtDur(r.spread), ""},
		},
		Notes: []string{
			fmt.Sprintf("In-process agent (stack.Build) with the binary's defaults: kube client %d QPS / burst %d, STS budget %d/s burst %d, max fetch wait %v, %d req/s per address.",
				binaryClientQPS, binaryClientBurst, binarySTSRate, binarySTSBurst, binaryMaxWait, binaryRateLimit),
			"\"retried answers\" are attempts a pod's SDK would have retried (503 with Retry-After while a fetch is under way); times include those retries.",
		},
	}
	return []table{t}
}

func durs3(ds []time.Duration) string {
	return fmt.Sprintf("%s / %s / %s", fmtDur(quantile(ds, .5)), fmtDur(quantile(ds, .99)), fmtDur(quantile(ds, 1)))
}

func (r *stormResult) checks() []check {
	return []check{
		{"storm", "STS calls", fmt.Sprint(r.stsCalls), fmt.Sprintf("= %d", r.cfg.serviceAccounts), verdict(r.stsCalls == r.cfg.serviceAccounts)},
		{"storm", "TokenRequests", fmt.Sprint(r.tokenRequests), "", ""},
		{"storm", "pods served", fmt.Sprintf("%d/%d", r.cfg.pods-r.failedPods, r.cfg.pods), fmt.Sprintf("= %d", r.cfg.pods), verdict(r.failedPods == 0)},
		{"storm", "time to first credential p50 / p99", fmt.Sprintf("%s / %s", fmtDur(quantile(r.createToCreds, .5)), fmtDur(quantile(r.createToCreds, .99))), "", ""},
	}
}
