package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Token refresh rules shared by podcreds' TokenManager and the kubelet: a
// token is replaced once 80 % of its lifetime has passed, up to 10 s early.
const (
	tokenRefreshFraction = 0.8
	tokenMaxJitter       = 10 * time.Second
)

// Timing holds the refresh behaviour and quotas of the three architectures.
type Timing struct {
	// podcreds: background refresh of each (node, ServiceAccount) entry after
	// U[RefreshMin, RefreshMax] (defaults 34–40 min for 1 h credentials).
	RefreshMin, RefreshMax time.Duration
	// Per-pod sessions: the same kind of agent cache, one entry per pod.
	PerPodRefreshMin, PerPodRefreshMax time.Duration
	// IRSA: each pod's SDK re-assumes the role this long after the last
	// call; a pod's interval is fixed by its SDK, spread over the range.
	IRSARefreshMin, IRSARefreshMax time.Duration

	// TokenTTL is the lifetime of podcreds' TokenRequest tokens.
	TokenTTL time.Duration
	// KubeletTokenTTL is the lifetime of the projected token the kubelet
	// keeps fresh in every pod for per-pod sessions and IRSA.
	KubeletTokenTTL time.Duration

	// STSPerSAPerRefresh is STS calls per podcreds entry per fetch (measured:
	// 1, concurrent first requests coalesce).
	STSPerSAPerRefresh float64
	// SATTL is podcreds' ServiceAccount cache TTL; Resync the pod informer's
	// resync period, after which the binder re-resolves every pod (0: no
	// resync).
	SATTL, Resync time.Duration
	// SAGetsPerRefresh is the ServiceAccount GETs that pods' own credential
	// requests cause per entry per credential refresh cycle (pods of one
	// (node, ServiceAccount) hold credentials with the same expiry and so
	// ask together, within one TTL).
	SAGetsPerRefresh float64

	// ClientQPS and ClientBurst are podcreds' client-side rate limit on the
	// API server (cmd/podcreds: 20 and 50), which paces each agent's cold
	// start.
	ClientQPS   float64
	ClientBurst int

	// FirstHopLife is the first hop's credential lifetime when a
	// ServiceAccount chains into a target role (--credential-duration).
	FirstHopLife time.Duration

	// Quota is the STS request rate quota, calls per second.
	Quota float64
	// Seed drives the Monte Carlo estimate of podcreds' token interval when
	// no closed form applies.
	Seed uint64
}

func (t Timing) validate() error {
	var errs []error
	ranges := []struct {
		name     string
		min, max time.Duration
	}{
		{"refresh", t.RefreshMin, t.RefreshMax},
		{"perpod-refresh", t.PerPodRefreshMin, t.PerPodRefreshMax},
		{"irsa-refresh", t.IRSARefreshMin, t.IRSARefreshMax},
	}
	for _, r := range ranges {
		if r.min <= 0 || r.max < r.min {
			errs = append(errs, fmt.Errorf("-%s-min/-%s-max: need 0 < min ≤ max, got %v/%v", r.name, r.name, r.min, r.max))
		}
	}
	if t.TokenTTL <= 0 || t.KubeletTokenTTL <= 0 {
		errs = append(errs, errors.New("token TTLs must be > 0"))
	}
	if t.SATTL <= 0 || t.Resync < 0 {
		errs = append(errs, errors.New("-sa-ttl must be > 0 and -resync ≥ 0"))
	}
	if t.ClientQPS <= 0 || t.ClientBurst < 0 {
		errs = append(errs, errors.New("-client-qps must be > 0 and -client-burst ≥ 0"))
	}
	if t.STSPerSAPerRefresh < 0 || t.SAGetsPerRefresh < 0 {
		errs = append(errs, errors.New("-sts-per-sa-per-refresh and -sa-gets-per-refresh must be ≥ 0"))
	}
	if t.FirstHopLife <= firstHopMargin {
		errs = append(errs, fmt.Errorf("-first-hop-life must be longer than %v", firstHopMargin))
	}
	if t.Quota <= 0 {
		errs = append(errs, errors.New("-sts-quota must be > 0"))
	}
	return errors.Join(errs...)
}

// Arch is one architecture's load on the API server and STS.
type Arch struct {
	Name    string
	Watches int // open watch connections the credential agents hold

	TokenRequestsPerSec float64
	SAGetsPerSec        float64
	STSPerSec           float64

	// Cold start: every node's agent (and, for the per-pod designs, every
	// pod) starts at once.
	ColdLists, ColdSAGets, ColdTokenRequests, ColdSTS float64
}

// APIPerSec is the steady-state request rate on the API server (watch
// events aside).
func (a Arch) APIPerSec() float64 { return a.TokenRequestsPerSec + a.SAGetsPerSec }

// Headroom is how many times the STS load fits in the quota.
func (a Arch) Headroom(quota float64) float64 {
	if a.STSPerSec == 0 {
		return math.Inf(1)
	}
	return quota / a.STSPerSec
}

// Drain is how long the cold-start STS burst takes at the quota.
func (a Arch) Drain(quota float64) time.Duration {
	return time.Duration(a.ColdSTS / quota * float64(time.Second))
}

// Model is the result for one cluster and timing.
type Model struct {
	Cluster *Cluster
	Timing  Timing

	PodcredsRefresh      time.Duration // mean credential refresh interval
	PodcredsTokenEvery   time.Duration // mean TokenRequest interval per entry
	PodcredsTokenRefresh int           // credential refreshes per TokenRequest, when exact (else 0)
	PerPodRefresh        time.Duration
	IRSAEffective        time.Duration // 1 / E[1/T]
	KubeletTokenEvery    time.Duration

	// podcreds' ServiceAccount GETs split by cause, and the bound if every
	// role-bearing entry were asked once per TTL.
	SAGetsResync, SAGetsRequests, SAGetsBound float64

	// One agent's cold start: API requests (mean, max over nodes) and the
	// time the client limiter takes to let them through.
	ColdRequestsPerNode           float64
	ColdRequestsPerNodeMax        int
	ColdNodeTime, ColdNodeTimeMax time.Duration

	// BreakEvenSharing is the pods per (node, ServiceAccount with a role) at
	// which podcreds makes as many STS calls as IRSA.
	BreakEvenSharing float64

	// A chained entry's STS calls (both hops) and TokenRequests per
	// credential refresh.
	ChainedSTSPerRefresh, ChainedTokensPerRefresh float64

	// Archs are podcreds, per-pod sessions, IRSA, and podcreds with every
	// role chained, in that order.
	Archs []Arch
}

// Compute derives every architecture's rates.
func Compute(c *Cluster, t Timing) (*Model, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	m := &Model{Cluster: c, Timing: t}
	m.PodcredsRefresh = mean(t.RefreshMin, t.RefreshMax)
	m.PerPodRefresh = mean(t.PerPodRefreshMin, t.PerPodRefreshMax)
	m.IRSAEffective = harmonicUniform(t.IRSARefreshMin, t.IRSARefreshMax)
	m.KubeletTokenEvery = time.Duration(tokenRefreshFraction * float64(t.KubeletTokenTTL))
	m.PodcredsTokenEvery, m.PodcredsTokenRefresh = lazyTokenInterval(t.RefreshMin, t.RefreshMax, t.TokenTTL, t.Seed)

	pairs, awsPairs := float64(c.Pairs), float64(c.AWSPairs)
	awsPods := float64(c.AWSPods)

	if t.Resync > 0 {
		m.SAGetsResync = pairs / t.Resync.Seconds()
	}
	m.SAGetsRequests = awsPairs * t.SAGetsPerRefresh / m.PodcredsRefresh.Seconds()
	m.SAGetsBound = awsPairs / t.SATTL.Seconds()
	if t.Resync > 0 {
		m.SAGetsBound += (pairs - awsPairs) / t.Resync.Seconds()
	}

	// One agent's cold start: a LIST, a GET per ServiceAccount on the node
	// and a TokenRequest per one with a role, paced by the client limiter.
	for n := range c.PerNodeSAs {
		m.ColdRequestsPerNodeMax = max(m.ColdRequestsPerNodeMax, 1+c.PerNodeSAs[n]+c.PerNodeAWSSAs[n])
	}
	if c.Nodes > 0 {
		m.ColdRequestsPerNode = 1 + (pairs+awsPairs)/float64(c.Nodes)
	}
	m.ColdNodeTime = paced(m.ColdRequestsPerNode, t.ClientQPS, t.ClientBurst)
	m.ColdNodeTimeMax = paced(float64(m.ColdRequestsPerNodeMax), t.ClientQPS, t.ClientBurst)
	m.BreakEvenSharing = t.STSPerSAPerRefresh * m.IRSAEffective.Seconds() / m.PodcredsRefresh.Seconds()

	podcreds := Arch{
		Name:                "podcreds (per node, ServiceAccount)",
		Watches:             c.Nodes,
		TokenRequestsPerSec: awsPairs / m.PodcredsTokenEvery.Seconds(),
		SAGetsPerSec:        m.SAGetsResync + m.SAGetsRequests,
		STSPerSec:           awsPairs * t.STSPerSAPerRefresh / m.PodcredsRefresh.Seconds(),
		ColdLists:           float64(c.Nodes),
		ColdSAGets:          pairs,
		ColdTokenRequests:   awsPairs,
		ColdSTS:             awsPairs * t.STSPerSAPerRefresh,
	}
	kubeletTokens := awsPods / m.KubeletTokenEvery.Seconds()
	perPod := Arch{
		Name:                "per-pod sessions (Pod Identity Agent style)",
		TokenRequestsPerSec: kubeletTokens,
		STSPerSec:           awsPods / m.PerPodRefresh.Seconds(),
		ColdTokenRequests:   awsPods,
		ColdSTS:             awsPods,
	}
	irsa := Arch{
		Name:                "IRSA (SDK in every pod)",
		TokenRequestsPerSec: kubeletTokens,
		STSPerSec:           awsPods / m.IRSAEffective.Seconds(),
		ColdTokenRequests:   awsPods,
		ColdSTS:             awsPods,
	}
	// The same agents with every role chained into a target role (a
	// second hop, for session tags): each refresh makes an AssumeRole,
	// plus a first hop and TokenRequest only when the cached ones are due.
	// Chained credentials last at most an hour, so the refresh interval is
	// that of one-hour credentials whatever --credential-duration says.
	stsPer, tokensPer := chainedPerRefresh(t.RefreshMin, t.RefreshMax, t.FirstHopLife, t.TokenTTL, t.Seed)
	m.ChainedSTSPerRefresh, m.ChainedTokensPerRefresh = stsPer, tokensPer
	chained := podcreds
	chained.Name = "podcreds, every role chained (second hop)"
	chained.STSPerSec = awsPairs * stsPer / m.PodcredsRefresh.Seconds()
	chained.TokenRequestsPerSec = awsPairs * tokensPer / m.PodcredsRefresh.Seconds()
	chained.ColdSTS = 2 * awsPairs
	m.Archs = []Arch{podcreds, perPod, irsa, chained}
	return m, nil
}

// paced is how long a token-bucket limiter (qps, burst) takes to admit n
// requests that arrive at once.
func paced(n, qps float64, burst int) time.Duration {
	wait := max(0, n-float64(burst)) / qps
	return time.Duration(wait * float64(time.Second))
}

func mean(a, b time.Duration) time.Duration { return (a + b) / 2 }

// harmonicUniform returns 1/E[1/T] for T uniform on [a, b]: the effective
// interval of a population whose members each keep a fixed interval.
func harmonicUniform(a, b time.Duration) time.Duration {
	if a == b {
		return a
	}
	x, y := a.Seconds(), b.Seconds()
	rate := math.Log(y/x) / (y - x)
	return time.Duration(1 / rate * float64(time.Second))
}

// lazyTokenInterval is the mean time between podcreds' TokenRequests for one
// entry. The TokenManager only asks for a token when a credential fetch needs
// one, and reuses the cached token (same pod: the entry's newest user) until
// 80 % of its lifetime minus up to 10 s of jitter has passed. So the token is
// renewed at the first credential refresh at or after that point: with
// refresh intervals R_i ~ U[lo, hi] and threshold T, after N = min{n : R_1 +
// … + R_n ≥ T} refreshes, and by Wald's identity E[interval] = E[N]·E[R].
//
// When (n−1)·hi < T_min and n·lo ≥ T_max, N = n always and the result is
// exact (returned as n); otherwise it is a seeded Monte Carlo estimate
// (returned with n = 0).
func lazyTokenInterval(lo, hi, tokenTTL time.Duration, seed uint64) (time.Duration, int) {
	tMax := time.Duration(tokenRefreshFraction * float64(tokenTTL))
	tMin := tMax - tokenMaxJitter
	for n := 1; time.Duration(n-1)*hi < tMin; n++ {
		if time.Duration(n)*lo >= tMax {
			return time.Duration(n) * mean(lo, hi), n
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x746f6b656e)) // "token"
	const cycles = 200_000
	var total float64
	for range cycles {
		t := tMax.Seconds() - rng.Float64()*tokenMaxJitter.Seconds()
		s := 0.0
		for s < t {
			s += lo.Seconds() + rng.Float64()*(hi-lo).Seconds()
		}
		total += s
	}
	return time.Duration(total / cycles * float64(time.Second)), 0
}
