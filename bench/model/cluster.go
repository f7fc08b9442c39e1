package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// ClusterParams describe the synthetic cluster.
type ClusterParams struct {
	Nodes       int
	PodsPerNode int
	// Namespaces × SAsPerNamespace workload ServiceAccounts exist. A
	// ServiceAccount's identity is (namespace, name), so namespaces only
	// matter through the number of distinct ServiceAccounts they make.
	Namespaces      int
	SAsPerNamespace int
	// DaemonSets is the number of DaemonSet ServiceAccounts: every node runs
	// exactly one pod of each. DaemonSetAWS of them have a role.
	DaemonSets   int
	DaemonSetAWS int
	// Workload pods (PodsPerNode − DaemonSets per node) pick their
	// ServiceAccount by Zipf–Mandelbrot popularity: rank i (from 1) has
	// weight (i + ZipfQ)^−ZipfS.
	ZipfS, ZipfQ float64
	// AWSFraction of all pods should run as a ServiceAccount with a role.
	// Roles belong to ServiceAccounts, so whole ServiceAccounts are marked,
	// in seeded random order, until the fraction is reached.
	AWSFraction float64
	Seed        uint64
}

func (p ClusterParams) validate() error {
	var errs []error
	if p.Nodes < 1 || p.PodsPerNode < 1 {
		errs = append(errs, errors.New("nodes and pods per node must be ≥ 1"))
	}
	if p.DaemonSets < 0 || p.DaemonSets > p.PodsPerNode {
		errs = append(errs, fmt.Errorf("daemonsets must be in [0, pods per node], got %d", p.DaemonSets))
	}
	if p.DaemonSetAWS < 0 || p.DaemonSetAWS > p.DaemonSets {
		errs = append(errs, fmt.Errorf("daemonset-aws must be in [0, daemonsets], got %d", p.DaemonSetAWS))
	}
	if p.Namespaces < 1 || p.SAsPerNamespace < 1 {
		errs = append(errs, errors.New("namespaces and SAs per namespace must be ≥ 1"))
	}
	if p.ZipfS <= 0 || p.ZipfQ < 0 {
		errs = append(errs, errors.New("zipf-s must be > 0 and zipf-q ≥ 0"))
	}
	if p.AWSFraction < 0 || p.AWSFraction > 1 {
		errs = append(errs, errors.New("aws-fraction must be in [0, 1]"))
	}
	return errors.Join(errs...)
}

// Cluster is what the rate model needs from a placement of pods on nodes,
// plus descriptive statistics.
type Cluster struct {
	Nodes   int
	Pods    int
	AWSPods int

	SAsDefined  int // ServiceAccounts that exist (DaemonSet + workload)
	SAsInUse    int // with at least one pod
	AWSSAsInUse int // with a role and at least one pod

	// Pairs counts distinct (node, ServiceAccount) over all pods, AWSPairs
	// over pods whose ServiceAccount has a role.
	Pairs, AWSPairs int
	// SpreadAWSPairs is Σ over role-bearing ServiceAccounts of
	// min(replicas, nodes): the pair count if the scheduler spread every
	// ServiceAccount's pods over distinct nodes (least sharing).
	SpreadAWSPairs int

	PerNodeSAs    []int // distinct ServiceAccounts on each node
	PerNodeAWSSAs []int // distinct role-bearing ServiceAccounts on each node
	Replicas      []int // pods per ServiceAccount in use, sorted ascending
}

// Generate places Nodes × PodsPerNode pods deterministically from Seed.
// Every node gets one pod of each DaemonSet; the remaining slots are filled
// with independent Zipf draws, which is uniform random placement with exact
// per-node capacity.
func Generate(p ClusterParams) (*Cluster, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(p.Seed, 0x706f64637265647a)) // "podcredz"
	workload := p.Namespaces * p.SAsPerNamespace
	nSA := p.DaemonSets + workload

	cum := make([]float64, workload)
	total := 0.0
	for i := range cum {
		total += math.Pow(float64(i+1)+p.ZipfQ, -p.ZipfS)
		cum[i] = total
	}

	// SA ids: [0, DaemonSets) DaemonSets, then workload SAs by rank.
	nodes := make([][]int, p.Nodes)
	for n := range nodes {
		pods := make([]int, 0, p.PodsPerNode)
		for d := range p.DaemonSets {
			pods = append(pods, d)
		}
		for len(pods) < p.PodsPerNode {
			u := rng.Float64() * total
			i := sort.SearchFloat64s(cum, u) // first cum[i] ≥ u
			if i >= workload {
				i = workload - 1
			}
			pods = append(pods, p.DaemonSets+i)
		}
		nodes[n] = pods
	}

	replicas := make([]int, nSA)
	for _, pods := range nodes {
		for _, sa := range pods {
			replicas[sa]++
		}
	}
	aws := make([]bool, nSA)
	target := int(math.Round(p.AWSFraction * float64(p.Nodes*p.PodsPerNode)))
	awsPods := 0
	for d := range p.DaemonSetAWS {
		aws[d] = true
		awsPods += replicas[d]
	}
	for _, k := range rng.Perm(workload) {
		if awsPods >= target {
			break
		}
		sa := p.DaemonSets + k
		if replicas[sa] == 0 {
			continue
		}
		aws[sa] = true
		awsPods += replicas[sa]
	}
	return FromPlacement(nodes, nSA, func(sa int) bool { return aws[sa] }), nil
}

// FromPlacement summarises a placement: nodes[n] lists the ServiceAccount id
// (in [0, nSA)) of every pod on node n; aws says whether a ServiceAccount has
// a role.
func FromPlacement(nodes [][]int, nSA int, aws func(sa int) bool) *Cluster {
	c := &Cluster{
		Nodes:         len(nodes),
		SAsDefined:    nSA,
		PerNodeSAs:    make([]int, len(nodes)),
		PerNodeAWSSAs: make([]int, len(nodes)),
	}
	replicas := make([]int, nSA)
	seen := make([]int, nSA) // node index + 1 that last saw the SA
	for n, pods := range nodes {
		for _, sa := range pods {
			c.Pods++
			replicas[sa]++
			isAWS := aws(sa)
			if isAWS {
				c.AWSPods++
			}
			if seen[sa] == n+1 {
				continue
			}
			seen[sa] = n + 1
			c.PerNodeSAs[n]++
			if isAWS {
				c.PerNodeAWSSAs[n]++
			}
		}
		c.Pairs += c.PerNodeSAs[n]
		c.AWSPairs += c.PerNodeAWSSAs[n]
	}
	for sa, r := range replicas {
		if r == 0 {
			continue
		}
		c.SAsInUse++
		c.Replicas = append(c.Replicas, r)
		if aws(sa) {
			c.AWSSAsInUse++
			c.SpreadAWSPairs += min(r, c.Nodes)
		}
	}
	slices.Sort(c.Replicas)
	return c
}

// stats of an integer sample: mean, p50, p99 (nearest rank), max.
type stats struct {
	Mean          float64
	P50, P99, Max int
}

func summarize(xs []int) stats {
	if len(xs) == 0 {
		return stats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0
	for _, x := range s {
		sum += x
	}
	rank := func(q float64) int {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return stats{Mean: float64(sum) / float64(len(s)), P50: rank(0.5), P99: rank(0.99), Max: s[len(s)-1]}
}
