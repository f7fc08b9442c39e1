package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func defaultParams() ClusterParams {
	return ClusterParams{
		Nodes: 5000, PodsPerNode: 110, Namespaces: 2000, SAsPerNamespace: 5,
		DaemonSets: 10, DaemonSetAWS: 3, ZipfS: 1.4, ZipfQ: 50, AWSFraction: 0.6, Seed: 1,
	}
}

func defaultTiming() Timing {
	return Timing{
		RefreshMin: 24 * time.Minute, RefreshMax: 30 * time.Minute,
		PerPodRefreshMin: 24 * time.Minute, PerPodRefreshMax: 30 * time.Minute,
		IRSARefreshMin: 45 * time.Minute, IRSARefreshMax: 55 * time.Minute,
		TokenTTL: time.Hour, KubeletTokenTTL: time.Hour, FirstHopLife: time.Hour,
		STSPerSAPerRefresh: 1, SATTL: 30 * time.Second, Resync: 10 * time.Minute, SAGetsPerRefresh: 1,
		ClientQPS: 20, ClientBurst: 50, Quota: 600, Seed: 1,
	}
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.12g, want %.12g", what, got, want)
	}
}

// placement builds nodes × perNode pods with sa(node, i) as ServiceAccount.
func placement(nodes, perNode int, sa func(n, i int) int) [][]int {
	out := make([][]int, nodes)
	for n := range out {
		for i := range perNode {
			out[n] = append(out[n], sa(n, i))
		}
	}
	return out
}

func allAWS(int) bool { return true }

func compute(t *testing.T, c *Cluster, tm Timing) *Model {
	t.Helper()
	m, err := Compute(c, tm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// With one ServiceAccount per pod nothing is shared, so podcreds differs from
// per-pod sessions only by its refresh interval.
func TestNoSharingScalesByInterval(t *testing.T) {
	const nodes, perNode = 40, 25
	c := FromPlacement(placement(nodes, perNode, func(n, i int) int { return n*perNode + i }), nodes*perNode, allAWS)
	if c.AWSPairs != c.AWSPods || c.AWSPods != nodes*perNode {
		t.Fatalf("pairs %d, pods %d: want both %d", c.AWSPairs, c.AWSPods, nodes*perNode)
	}
	tm := defaultTiming()
	tm.PerPodRefreshMin, tm.PerPodRefreshMax = 40*time.Minute, 50*time.Minute
	m := compute(t, c, tm)
	podcreds, perPod := m.Archs[0], m.Archs[1]
	near(t, "podcreds STS/s", podcreds.STSPerSec,
		perPod.STSPerSec*m.PerPodRefresh.Seconds()/m.PodcredsRefresh.Seconds())
	near(t, "per-pod STS/s", perPod.STSPerSec, float64(nodes*perNode)/(45*time.Minute).Seconds())
	if podcreds.ColdSTS != perPod.ColdSTS {
		t.Errorf("cold-start STS: podcreds %v, per-pod %v; want equal without sharing", podcreds.ColdSTS, perPod.ColdSTS)
	}
}

// With every pod of a node in one ServiceAccount, podcreds makes one STS
// call per node per refresh, whatever the pods per node.
func TestOneServiceAccountPerNode(t *testing.T) {
	const nodes = 300
	tm := defaultTiming()
	for _, tc := range []struct {
		name string
		sa   func(n, i int) int
		nSA  int
	}{
		{"own SA per node", func(n, _ int) int { return n }, nodes},
		{"one SA cluster-wide", func(int, int) int { return 0 }, 1},
	} {
		for _, perNode := range []int{1, 110} {
			c := FromPlacement(placement(nodes, perNode, tc.sa), tc.nSA, allAWS)
			m := compute(t, c, tm)
			p := m.Archs[0]
			refresh := (27 * time.Minute).Seconds()
			near(t, tc.name+": podcreds STS/s", p.STSPerSec, nodes/refresh)
			// Defaults: the 1 h token is renewed at every second refresh.
			near(t, tc.name+": podcreds TokenRequests/s", p.TokenRequestsPerSec, nodes/(2*refresh))
			near(t, tc.name+": per-pod STS/s", m.Archs[1].STSPerSec, float64(nodes*perNode)/refresh)
			near(t, tc.name+": cold-start drain (s)", p.Drain(600).Seconds(), nodes/600.0)
		}
	}
	c := FromPlacement(placement(nodes, 110, func(n, _ int) int { return n }), nodes, allAWS)
	tm.STSPerSAPerRefresh = 2
	near(t, "podcreds STS/s with 2 calls per refresh", compute(t, c, tm).Archs[0].STSPerSec, 2*nodes/(27*time.Minute).Seconds())
}

func TestLazyTokenInterval(t *testing.T) {
	for _, tc := range []struct {
		lo, hi time.Duration
		want   time.Duration
		n      int
	}{
		{24 * time.Minute, 30 * time.Minute, 54 * time.Minute, 2}, // defaults
		{48 * time.Minute, 60 * time.Minute, 54 * time.Minute, 1}, // 2 h credentials
		{16 * time.Minute, 16 * time.Minute, 48 * time.Minute, 3},
	} {
		got, n := lazyTokenInterval(tc.lo, tc.hi, time.Hour, 1)
		if got != tc.want || n != tc.n {
			t.Errorf("lazyTokenInterval(%v, %v) = %v, %d; want %v, %d", tc.lo, tc.hi, got, n, tc.want, tc.n)
		}
	}
	// No closed form: between the threshold and threshold + one interval,
	// and reproducible.
	a, n := lazyTokenInterval(10*time.Minute, 40*time.Minute, time.Hour, 7)
	b, _ := lazyTokenInterval(10*time.Minute, 40*time.Minute, time.Hour, 7)
	if n != 0 || a != b || a < 48*time.Minute || a > 88*time.Minute {
		t.Errorf("Monte Carlo interval %v (n=%d), again %v: want one value in [48m, 88m] with n=0", a, n, b)
	}
}

func TestIRSAEffectiveInterval(t *testing.T) {
	if got := harmonicUniform(50*time.Minute, 50*time.Minute); got != 50*time.Minute {
		t.Errorf("fixed interval: %v", got)
	}
	got := harmonicUniform(45*time.Minute, 55*time.Minute)
	if got <= 45*time.Minute || got >= 50*time.Minute {
		t.Errorf("harmonic mean of U[45m, 55m] = %v, want in (45m, 50m)", got)
	}
}

func TestGenerate(t *testing.T) {
	p := defaultParams()
	c, err := Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pods != p.Nodes*p.PodsPerNode {
		t.Errorf("pods %d, want %d", c.Pods, p.Nodes*p.PodsPerNode)
	}
	for n, k := range c.PerNodeSAs {
		if k < p.DaemonSets+1 || k > p.PodsPerNode || c.PerNodeAWSSAs[n] < p.DaemonSetAWS || c.PerNodeAWSSAs[n] > k {
			t.Fatalf("node %d: %d SAs, %d with a role", n, k, c.PerNodeAWSSAs[n])
		}
	}
	top := c.Replicas[len(c.Replicas)-1]
	if target := int(p.AWSFraction * float64(c.Pods)); c.AWSPods < target || c.AWSPods > target+top {
		t.Errorf("pods with a role %d, want in [%d, %d]", c.AWSPods, target, target+top)
	}
	if c.AWSPairs > c.AWSPods || c.AWSPairs > c.SpreadAWSPairs || c.Pairs > c.Pods {
		t.Errorf("pairs: %d with a role (spread bound %d), %d in all, for %d pods", c.AWSPairs, c.SpreadAWSPairs, c.Pairs, c.Pods)
	}
}

func TestDeterministic(t *testing.T) {
	p, tm := defaultParams(), defaultTiming()
	p.Nodes = 500
	a, err := run(p, tm)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := run(p, tm)
	if a != b {
		t.Fatal("same seed, different output")
	}
	p.Seed, tm.Seed = 2, 2
	c, _ := run(p, tm)
	if a == c {
		t.Error("different seeds, same output")
	}
	if !strings.Contains(a, "| podcreds (per node, ServiceAccount) |") {
		t.Errorf("output lacks the podcreds row:\n%s", a)
	}
}

func TestChainedEntriesReuseTheFirstHop(t *testing.T) {
	// Refreshes every 34–40 min: a one-hour first hop still has 20 min or
	// more at the first refresh and is renewed at the second (68–80 min
	// after it was made, past 55), so every other refresh makes one, and
	// each first hop needs a new token (80 % of an hour is 48 min).
	sts, tokens := chainedPerRefresh(34*time.Minute, 40*time.Minute, time.Hour, time.Hour, 1)
	near(t, "STS calls per refresh", sts, 1.5)
	near(t, "TokenRequests per refresh", tokens, 0.5)

	// A first hop that never lasts to the next refresh is made every time.
	sts, _ = chainedPerRefresh(34*time.Minute, 40*time.Minute, 30*time.Minute, time.Hour, 1)
	near(t, "STS calls per refresh, short first hop", sts, 2)

	tm := defaultTiming()
	tm.RefreshMin, tm.RefreshMax = 34*time.Minute, 40*time.Minute
	m := compute(t, FromPlacement(placement(10, 10, func(n, i int) int { return i % 3 }), 3, allAWS), tm)
	near(t, "chained STS/s against podcreds'", m.Archs[3].STSPerSec/m.Archs[0].STSPerSec, 1.5)
}
