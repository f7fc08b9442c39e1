package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"go.uber.org/zap"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/fakests"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/tokenreq"
)

// soakConfig: entries pods, one per ServiceAccount, each asking perPodRate
// times a second for duration, with credentials that live lifetime.
type soakConfig struct {
	entries    int
	lifetime   time.Duration
	duration   time.Duration
	perPodRate float64
	latency    time.Duration
}

// policy is the refresh policy of a soak, scaled to its lifetime from the
// production defaults (cache.Default*), and the windows it implies.
type policy struct {
	cache.Options
	lifetime, latency time.Duration
}

func soakPolicy(c soakConfig) policy {
	return policy{
		Options: cache.Options{
			RefreshFraction: cache.DefaultRefreshFraction,
			RefreshJitter:   cache.DefaultRefreshJitter,
			// 20 min of 1 h, scaled: as in production, it and the
			// fraction put the refresh at the same point.
			RefreshBefore: c.lifetime / 3,
			SafetyMargin:  time.Second,
		},
		lifetime: c.lifetime, latency: c.latency,
	}
}

// delay returns the shortest, mean and longest refresh delay the policy
// gives credentials of the soak's lifetime (cache/doc.go):
// min(F·L, L−before) − U[0, J·L), but at least L/4, where L is what the
// cache sees: Expiration kept in whole seconds, as served (cache/render.go),
// so up to a second short of the lifetime STS granted — 8 % of 12 s, a
// rounding error of an hour. The delay runs from the moment a fetch lands to
// the start of the next one.
func (p policy) delay() (lo, mean, hi time.Duration) {
	at := func(life time.Duration, jitter float64) time.Duration {
		l := float64(life)
		d := min(time.Duration(p.RefreshFraction*l), life-p.RefreshBefore)
		return max(d-time.Duration(jitter*p.RefreshJitter*l), life/4)
	}
	short := p.lifetime - time.Second
	return at(short, 1), at(p.lifetime-time.Second/2, 0.5), at(p.lifetime, 0)
}

// period returns the shortest, mean and longest time between the starts of
// two consecutive calls of one entry: a delay plus the call's own latency.
func (p policy) period() (lo, mean, hi time.Duration) {
	lo, mean, hi = p.delay()
	return lo + p.latency, mean + p.latency, hi + p.latency
}

// stsCall is one AssumeRoleWithWebIdentity as the STS saw it.
type stsCall struct {
	at, end time.Time // called, answered
	session string    // podcreds@<namespace>.<ServiceAccount>: the entry
}

// recordingSTS passes calls to next and remembers when each came, for whom.
type recordingSTS struct {
	next  tokenreq.STSClient
	mu    sync.Mutex
	calls []stsCall
}

func (r *recordingSTS) AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, opts ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	r.mu.Lock()
	i := len(r.calls)
	r.calls = append(r.calls, stsCall{at: time.Now(), session: aws.ToString(in.RoleSessionName)})
	r.mu.Unlock()
	out, err := r.next.AssumeRoleWithWebIdentity(ctx, in, opts...)
	r.mu.Lock()
	r.calls[i].end = time.Now()
	r.mu.Unlock()
	return out, err
}

func (r *recordingSTS) snapshot() []stsCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stsCall(nil), r.calls...)
}

// soakLoad is what the pods saw during the measured run.
type soakLoad struct {
	requests, ok int
	statuses     map[int]int // non-200 answers and transport errors (0)
	expired      int         // 200s whose Expiration had passed when received
	belowMargin  int         // 200s with less than SafetyMargin left
	minRemaining time.Duration
	latencies    []time.Duration
}

// runSoak restarts an agent onto a node with every pod already running (the
// worst start: every entry fetched at once), lets it warm up, then has every
// pod ask at a steady rate for cfg.duration while credentials expire and are
// refreshed again and again.
func runSoak(ctx context.Context, env *testenv.Env, logger *zap.Logger, cfg soakConfig) (*soakResult, error) {
	const ns, node = "soak", "soak-node"
	sa := func(i int) string { return fmt.Sprintf("sa-%03d", i) }
	role := func(int) string { return "arn:aws:iam::123456789012:role/soak" }
	if err := createServiceAccounts(ctx, env, ns, cfg.entries, sa, role); err != nil {
		return nil, err
	}
	pods := make([]pod, cfg.entries)
	for i := range pods {
		pods[i] = pod{Namespace: ns, Name: fmt.Sprintf("soak-%03d", i), ServiceAccount: sa(i), IP: podAddr(30, i)}
	}
	if err := parallel(ctx, len(pods), 25, func(ctx context.Context, i int) error { return runPod(ctx, env, node, pods[i]) }); err != nil {
		return nil, err
	}

	fake := fakests.New(cfg.lifetime)
	fake.SetLatency(cfg.latency)
	// Room for every call up front (a refresh at most every quarter
	// lifetime), so the recording does not grow the heap during the run.
	rec := &recordingSTS{next: fake, calls: make([]stsCall, 0, cfg.entries*(int(4*cfg.duration/cfg.lifetime)+8))}
	pol := soakPolicy(cfg)
	started := time.Now()
	a, err := startInproc(ctx, env, logger, agentSpec{node: node, sts: rec, cache: pol.Options, timeScale: float64(time.Hour) / float64(cfg.lifetime)})
	if err != nil {
		return nil, err
	}
	defer a.stop()
	err = parallel(ctx, len(pods), 25, func(ctx context.Context, i int) error {
		_, _, err := firstCredential(ctx, podClient(pods[i].IP, false), a.url, time.Now().Add(30*time.Second))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("warming up: %w", err)
	}
	res := &soakResult{cfg: cfg, policy: pol, agentStart: started, runStart: time.Now()}
	res.warmup = res.runStart.Sub(started)
	waitedBefore := a.counter("podcreds_cache_requests_total", map[string]string{"result": "miss"}) +
		a.counter("podcreds_cache_requests_total", map[string]string{"result": "coalesced"})

	runCtx, endRun := context.WithTimeout(ctx, cfg.duration)
	heap := heapSeries(runCtx, time.Second)
	res.load = soakRequests(runCtx, a.url, pods, cfg, pol.SafetyMargin)
	endRun()
	res.heap = trendOf(<-heap)
	res.runEnd = time.Now()
	res.waited = a.counter("podcreds_cache_requests_total", map[string]string{"result": "miss"}) +
		a.counter("podcreds_cache_requests_total", map[string]string{"result": "coalesced"}) - waitedBefore
	res.refreshFailures = a.counter("podcreds_cache_refresh_failures_total", nil)
	res.calls = rec.snapshot()
	res.analyse()
	return res, nil
}

// soakRequests has every pod ask perPodRate times a second, at a random
// phase, over a kept-alive connection from its address, until ctx ends, and
// checks every answer's Expiration against the moment
// it arrived.
func soakRequests(ctx context.Context, url string, pods []pod, cfg soakConfig, margin time.Duration) soakLoad {
	period := time.Duration(float64(time.Second) / cfg.perPodRate)
	total := soakLoad{statuses: map[int]int{}, minRemaining: time.Duration(1<<63 - 1)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Go(func() {
			c := podClient(p.IP, true)
			defer c.CloseIdleConnections()
			// Room for every answer up front: the run's heap must not
			// grow with the load's own records.
			own := soakLoad{statuses: map[int]int{}, minRemaining: total.minRemaining,
				latencies: make([]time.Duration, 0, int(cfg.duration.Seconds()*cfg.perPodRate)+4)}
			phase := time.NewTimer(time.Duration(rand.Int64N(int64(period))))
			select {
			case <-phase.C:
			case <-ctx.Done():
				return
			}
			tick := time.NewTicker(period)
			defer tick.Stop()
			for ctx.Err() == nil {
				own.observe(ctx, c, url, margin)
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
			}
			mu.Lock()
			total.merge(own)
			mu.Unlock()
		})
	}
	wg.Wait()
	return total
}

// observe sends one request and records what came back. A request cut short
// by the end of the run does not count.
func (l *soakLoad) observe(ctx context.Context, c *http.Client, url string, margin time.Duration) {
	began := time.Now()
	a, err := fetchCredentials(ctx, c, url)
	if ctx.Err() != nil {
		return
	}
	l.requests++
	switch {
	case err != nil:
		l.statuses[0]++
	case a.Status != http.StatusOK:
		l.statuses[a.Status]++
	default:
		l.ok++
		l.latencies = append(l.latencies, a.Received.Sub(began))
		left := a.Expiration.Sub(a.Received)
		l.minRemaining = min(l.minRemaining, left)
		if left <= 0 {
			l.expired++
		}
		if left < margin {
			l.belowMargin++
		}
	}
}

func (l *soakLoad) merge(o soakLoad) {
	l.requests += o.requests
	l.ok += o.ok
	for s, n := range o.statuses {
		l.statuses[s] += n
	}
	l.expired += o.expired
	l.belowMargin += o.belowMargin
	l.minRemaining = min(l.minRemaining, o.minRemaining)
	l.latencies = append(l.latencies, o.latencies...)
}
