package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Render writes the model as markdown. The output depends only on its
// inputs, so the same seed gives byte-identical output.
func Render(p ClusterParams, m *Model) string {
	c, t := m.Cluster, m.Timing
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("## Cluster\n\n")
	w("seed %d · %d nodes × %d pods = %d pods · %d namespaces × %d = %d workload ServiceAccounts (Zipf s=%g q=%g) + %d DaemonSet ServiceAccounts (%d with a role) · pods with a role %d (%.1f %%, target %.0f %%)\n\n",
		p.Seed, p.Nodes, p.PodsPerNode, c.Pods, p.Namespaces, p.SAsPerNamespace, p.Namespaces*p.SAsPerNamespace,
		p.ZipfS, p.ZipfQ, p.DaemonSets, p.DaemonSetAWS, c.AWSPods, pct(c.AWSPods, c.Pods), 100*p.AWSFraction)

	w("| ServiceAccount distribution | mean | p50 | p99 | max |\n|---|---:|---:|---:|---:|\n")
	row := func(name string, s stats) {
		w("| %s | %.1f | %d | %d | %d |\n", name, s.Mean, s.P50, s.P99, s.Max)
	}
	row("distinct ServiceAccounts per node", summarize(c.PerNodeSAs))
	row("distinct ServiceAccounts with a role per node", summarize(c.PerNodeAWSSAs))
	row("pods per ServiceAccount in use", summarize(c.Replicas))
	w("\n")
	w("ServiceAccounts in use %d of %d, %d with a role. Distinct (node, ServiceAccount) pairs: %d, %d with a role. "+
		"Sharing: %.2f pods per (node, ServiceAccount with a role). "+
		"Were every ServiceAccount spread over distinct nodes, %d pairs with a role (%+.1f %%).\n\n",
		c.SAsInUse, c.SAsDefined, c.AWSSAsInUse, c.Pairs, c.AWSPairs,
		ratio(c.AWSPods, c.AWSPairs), c.SpreadAWSPairs, 100*(ratio(c.SpreadAWSPairs, c.AWSPairs)-1))

	w("## Steady state (STS quota %s/s per account per Region, assumed)\n\n", num(t.Quota))
	w("| architecture | watches | API req/s | TokenRequests/s | STS calls/s | STS headroom vs %s/s | cold-start burst (STS calls) | time to drain at quota |\n", num(t.Quota))
	w("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, a := range m.Archs {
		w("| %s | %d | %.1f | %.1f | %.1f | %s | %s | %s |\n",
			a.Name, a.Watches, a.APIPerSec(), a.TokenRequestsPerSec, a.STSPerSec,
			headroom(a.Headroom(t.Quota)), num(a.ColdSTS), dur(a.Drain(t.Quota)))
	}
	w("\n")

	w("## Cold start (all %d nodes restart at once)\n\n", c.Nodes)
	w("| architecture | pod LISTs | ServiceAccount GETs | TokenRequests | STS calls |\n|---|---:|---:|---:|---:|\n")
	for _, a := range m.Archs {
		w("| %s | %s | %s | %s | %s |\n", a.Name, num(a.ColdLists), num(a.ColdSAGets), num(a.ColdTokenRequests), num(a.ColdSTS))
	}
	w("\n")
	w("Cold start, API side: podcreds' %s agents LIST their node's pods (field selector spec.nodeName) and send %.0f requests each on average (max %d: LIST + ServiceAccount GETs + TokenRequests); "+
		"their client limiter (%g QPS, burst %d) admits them in %s (max %s), so up to %s requests/s reach the API server across the cluster. "+
		"Per-pod designs: the kubelets' TokenRequests for %s projected tokens, paced by pod start-up.\n\n",
		num(float64(c.Nodes)), m.ColdRequestsPerNode, m.ColdRequestsPerNodeMax, t.ClientQPS, t.ClientBurst,
		dur(m.ColdNodeTime), dur(m.ColdNodeTimeMax), num(float64(c.Nodes)*t.ClientQPS), num(float64(c.AWSPods)))

	w("## Intervals used\n\n")
	tokenHow := "Monte Carlo estimate"
	if m.PodcredsTokenRefresh > 0 {
		tokenHow = fmt.Sprintf("exactly every %d credential refreshes", m.PodcredsTokenRefresh)
	}
	w("- podcreds: credentials every %s (U[%s, %s]) × %g STS call(s); TokenRequest every %s (lazy: %s, %s token refreshed at 80 %% of its lifetime).\n",
		dur(m.PodcredsRefresh), dur(t.RefreshMin), dur(t.RefreshMax), t.STSPerSAPerRefresh, dur(m.PodcredsTokenEvery), tokenHow, dur(t.TokenTTL))
	resync := "no informer resync"
	if t.Resync > 0 {
		resync = "the " + dur(t.Resync) + " informer resync"
	}
	w("- podcreds ServiceAccount GETs: %.1f/s from %s (every pair, with a role or not) + %.1f/s from pods' requests (%g per entry per refresh); bound if every entry with a role were asked at least once per %s TTL: %.1f/s.\n",
		m.SAGetsResync, resync, m.SAGetsRequests, t.SAGetsPerRefresh, dur(t.SATTL), m.SAGetsBound)
	w("- per-pod sessions: credentials every %s (U[%s, %s]) per pod; kubelet token every %s per pod (%s lifetime).\n",
		dur(m.PerPodRefresh), dur(t.PerPodRefreshMin), dur(t.PerPodRefreshMax), dur(m.KubeletTokenEvery), dur(t.KubeletTokenTTL))
	w("- IRSA: each pod's SDK every %s to %s (effective %s = 1/E[1/T]); kubelet token every %s per pod.\n",
		dur(t.IRSARefreshMin), dur(t.IRSARefreshMax), dur(m.IRSAEffective), dur(m.KubeletTokenEvery))
	podcreds, irsa, chained := m.Archs[0], m.Archs[2], m.Archs[3]
	w("- podcreds with a second hop (a target role with session tags) for every role: %.2f STS calls and %.2f TokenRequests per refresh (an AssumeRole each time; the cached first hop, %s, renewed once it has less than %s left); %.2f× the STS calls without chaining.\n",
		m.ChainedSTSPerRefresh, m.ChainedTokensPerRefresh, dur(t.FirstHopLife), dur(firstHopMargin), chained.STSPerSec/podcreds.STSPerSec)
	w("- podcreds vs IRSA STS calls: %.2f×. podcreds makes fewer STS calls than IRSA only above %.2f pods per (node, ServiceAccount with a role) (here %.2f).\n",
		podcreds.STSPerSec/irsa.STSPerSec, m.BreakEvenSharing, ratio(c.AWSPods, c.AWSPairs))
	return b.String()
}

func pct(a, b int) float64 { return 100 * ratio(a, b) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// num prints a count with thousands separators.
func num(x float64) string {
	s := fmt.Sprintf("%.0f", math.Round(x))
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func headroom(h float64) string {
	switch {
	case math.IsInf(h, 1):
		return "∞"
	case h >= 10:
		return fmt.Sprintf("%.0f×", h)
	default:
		return fmt.Sprintf("%.1f×", h)
	}
}

// dur prints a duration to the second (tenths below a minute).
func dur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		m, s := d/time.Minute, (d%time.Minute)/time.Second
		if s == 0 {
			return fmt.Sprintf("%d min", m)
		}
		return fmt.Sprintf("%d min %d s", m, s)
	default:
		d = d.Round(time.Minute)
		h, m := d/time.Hour, (d%time.Hour)/time.Minute
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
}
