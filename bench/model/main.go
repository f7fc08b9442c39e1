// Command model estimates, for a whole cluster, the load that serving pods
// AWS credentials puts on the Kubernetes API server and on STS, for podcreds
// (one agent per node, credentials shared per (node, ServiceAccount)), per-pod
// sessions (EKS Pod Identity Agent style) and IRSA (every pod's SDK calls
// STS). It generates a deterministic placement of pods and ServiceAccounts
// and prints markdown: the ServiceAccount distribution, steady-state rates,
// STS quota headroom and the cold-start burst.
//
//	go run ./bench/model
//	go run ./bench/model -nodes 1000 -aws-fraction 0.3 -o /tmp/model.md
//
// See README.md for every assumption.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	var p ClusterParams
	var t Timing
	var out string
	flag.IntVar(&p.Nodes, "nodes", 5000, "nodes (one agent each)")
	flag.IntVar(&p.PodsPerNode, "pods-per-node", 110, "pods on every node, DaemonSet pods included")
	flag.IntVar(&p.Namespaces, "namespaces", 2000, "namespaces")
	flag.IntVar(&p.SAsPerNamespace, "sas-per-namespace", 5, "workload ServiceAccounts per namespace")
	flag.IntVar(&p.DaemonSets, "daemonsets", 10, "DaemonSet ServiceAccounts (one pod of each on every node)")
	flag.IntVar(&p.DaemonSetAWS, "daemonset-aws", 3, "DaemonSet ServiceAccounts with a role")
	flag.Float64Var(&p.ZipfS, "zipf-s", 1.4, "Zipf exponent of workload ServiceAccount popularity")
	flag.Float64Var(&p.ZipfQ, "zipf-q", 50, "Zipf–Mandelbrot offset (flattens the head): weight of rank i is (i+q)^-s")
	flag.Float64Var(&p.AWSFraction, "aws-fraction", 0.6, "fraction of pods whose ServiceAccount has a role")
	flag.Uint64Var(&p.Seed, "seed", 1, "RNG seed (same seed, same output)")

	flag.DurationVar(&t.RefreshMin, "refresh-min", 34*time.Minute, "podcreds: earliest credential refresh after a fetch")
	flag.DurationVar(&t.RefreshMax, "refresh-max", 40*time.Minute, "podcreds: latest credential refresh after a fetch")
	flag.DurationVar(&t.PerPodRefreshMin, "perpod-refresh-min", 34*time.Minute, "per-pod sessions: earliest credential refresh")
	flag.DurationVar(&t.PerPodRefreshMax, "perpod-refresh-max", 40*time.Minute, "per-pod sessions: latest credential refresh")
	flag.DurationVar(&t.IRSARefreshMin, "irsa-refresh-min", 45*time.Minute, "IRSA: shortest SDK re-assume interval (botocore, 15 min before 1 h expiry)")
	flag.DurationVar(&t.IRSARefreshMax, "irsa-refresh-max", 55*time.Minute, "IRSA: longest SDK re-assume interval (Go/JS, 5 min before 1 h expiry)")
	flag.DurationVar(&t.FirstHopLife, "first-hop-life", time.Hour, "podcreds with a second hop: the first hop's credential lifetime (--credential-duration)")
	flag.DurationVar(&t.TokenTTL, "token-ttl", time.Hour, "podcreds: TokenRequest lifetime")
	flag.DurationVar(&t.KubeletTokenTTL, "kubelet-token-ttl", time.Hour, "per-pod and IRSA: projected token lifetime")
	flag.Float64Var(&t.STSPerSAPerRefresh, "sts-per-sa-per-refresh", 1, "podcreds: STS calls per (node, ServiceAccount) per fetch (measured 1)")
	flag.DurationVar(&t.SATTL, "sa-ttl", 30*time.Second, "podcreds: ServiceAccount cache TTL")
	flag.DurationVar(&t.Resync, "resync", 0, "podcreds: pod informer resync period (0: none, as the agent runs since it stopped resyncing)")
	flag.Float64Var(&t.SAGetsPerRefresh, "sa-gets-per-refresh", 1, "podcreds: ServiceAccount GETs caused by pods' requests per entry per refresh cycle")
	flag.Float64Var(&t.ClientQPS, "client-qps", 50, "podcreds: API client QPS per agent")
	flag.IntVar(&t.ClientBurst, "client-burst", 100, "podcreds: API client burst per agent")
	flag.Float64Var(&t.Quota, "sts-quota", 600, "STS request rate quota, calls/s per account per Region (assumed; verify)")
	flag.StringVar(&out, "o", "", "also write the markdown to this file")
	flag.Parse()
	t.Seed = p.Seed

	text, err := run(p, t)
	if err != nil {
		fmt.Fprintln(os.Stderr, "model:", err)
		os.Exit(2)
	}
	fmt.Print(text)
	if out != "" {
		if err := os.WriteFile(out, []byte(text), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "model:", err)
			os.Exit(1)
		}
	}
}

func run(p ClusterParams, t Timing) (string, error) {
	c, err := Generate(p)
	if err != nil {
		return "", err
	}
	m, err := Compute(c, t)
	if err != nil {
		return "", err
	}
	return Render(p, m), nil
}
