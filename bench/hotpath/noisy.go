package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podcreds/podcreds/bench/loadgen"
	"github.com/podcreds/podcreds/internal/testkit/proc"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/netsetup"
)

// neighbourLoad is what the noisy neighbour does: one pod on the node that
// opens conns connections (the agent's default cap), asks once on each and
// holds what it is given, opening again a second later whatever is refused
// or closed; and floods from the same address at flood requests/s (ten times
// the default per-address rate limit). Zero turns either part off, to see
// which one costs the victims what.
type neighbourLoad struct{ conns, flood int }

var defaultNeighbour = neighbourLoad{conns: 1024, flood: 500}

// runNoisy measures victim pods asking as SDKs do (a new connection per
// request, paced) against an agent with every default limit, in rounds
// alone and beside the noisy neighbour, interleaved, and prints the victim's
// latency in each with its ratio to the quiet rounds. Beside the neighbour
// it measures the agent's own per-address cap alone and, as root, with the
// product's kernel cap (netsetup's nftables rule) in front of it; split
// adds the neighbour's hoarding and its flood apart, with the kernel cap.
// Without root the kernel-cap rows are left out and the output says so.
func runNoisy(ctx context.Context, env *testenv.Env, agentBin, kubeconfig string, rounds int, round time.Duration, load neighbourLoad, split bool) error {
	const ns, node = "bench-noisy", "bench-noisy-node"
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		return err
	}
	var victims []netip.Addr
	for i := range 8 {
		ip := netip.AddrFrom4([4]byte{127, 51, 0, byte(i + 1)})
		victims = append(victims, ip)
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: fmt.Sprintf("victim-%d", i), ServiceAccount: "app", Node: node, IP: ip}); err != nil {
			return err
		}
	}
	noisyIP := netip.AddrFrom4([4]byte{127, 51, 1, 1})
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "noisy", ServiceAccount: "app", Node: node, IP: noisyIP}); err != nil {
		return err
	}
	agentAddr, healthAddr := freeAddr(), freeAddr()
	p, agentLog, err := startAgent(ctx, nil, agentBin, healthAddr, "--node-name="+node, "--kubeconfig="+kubeconfig,
		"--listen="+agentAddr, "--ecs-listen=none", "--health-listen="+healthAddr, "--metrics-listen=",
		"--sts-endpoint="+env.STSEndpoint, "--log-level=error")
	if err != nil {
		return fmt.Errorf("noisy-neighbour %w", err)
	}
	defer func() { _ = p.Stop(10 * time.Second) }()
	url := "http://" + agentAddr + "/v1/credentials"
	body, err := warm(ctx, url, append(victims, noisyIP))
	if err != nil {
		return fmt.Errorf("warming the noisy-neighbour agent: %w\n%s", err, agentLog.String())
	}

	// Eight pods, two workers, one request each per 20 ms: 100 requests/s,
	// about 12 per pod, well under the per-address limit.
	victim := loadgen.Config{
		URL: url, Sources: victims, KeepAlive: false, Concurrency: 2, Interval: 20 * time.Millisecond,
		Duration: round, ExpectBodyLen: len(body), RequestTimeout: 2 * time.Second, // botocore's timeout
	}
	ap, err := netip.ParseAddrPort(agentAddr)
	if err != nil {
		return err
	}
	kernel := newKernelCap(netsetup.ConnCap{Max: defaultMaxConnsPerAddress, Listeners: []netip.AddrPort{ap}})
	defer kernel.remove()
	// The rows beside the neighbour: what it does, whether the kernel cap
	// is in place, and what the neighbour reported.
	type row struct {
		name   string
		load   neighbourLoad
		kernel bool
		stats  neighbourStats
	}
	rows := []*row{{name: "noisy, agent's cap only", load: load}}
	if kernel.err == nil {
		rows = append(rows, &row{name: "noisy, kernel cap", load: load, kernel: true})
		if split && load.conns > 0 && load.flood > 0 {
			rows = append(rows,
				&row{name: "hoarding only, kernel cap", load: neighbourLoad{conns: load.conns}, kernel: true},
				&row{name: "flood only, kernel cap", load: neighbourLoad{flood: load.flood}, kernel: true})
		}
	}
	targets := []loadgen.Target{{Name: "quiet", Config: victim}}
	for _, r := range rows {
		targets = append(targets, loadgen.Target{Name: r.name, Config: victim, During: func(ctx context.Context) func() {
			if r.kernel {
				kernel.install()
			}
			stopNeighbour := startNeighbour(ctx, agentAddr, noisyIP, r.load, &r.stats)
			return func() {
				stopNeighbour()
				kernel.remove()
			}
		}})
	}
	fmt.Printf("\nnoisy neighbour: %d victim pods asking 100/s (new connection each, 2 s timeout) of an agent with default limits; the neighbour holds up to %d connections and floods at %d/s from one address\n",
		len(victims), load.conns, load.flood)
	if kernel.err != nil {
		fmt.Printf("kernel cap: NOT MEASURED, %v; the rows below measure the agent's own per-address cap only\n", kernel.err)
	} else {
		fmt.Printf("kernel cap: the product's rule (netsetup, --link-setup) in table %s, installed for the rows that say so:\n  %s\n",
			benchCapTable, strings.Join(kernel.rules, "\n  "))
	}
	series, err := loadgen.Interleave(ctx, rounds, targets)
	if err != nil {
		return err
	}
	if kernel.failed != nil {
		return fmt.Errorf("the kernel cap: %w", kernel.failed)
	}
	if err := loadgen.FormatTable(os.Stdout, "quiet", series); err != nil {
		return err
	}
	quiet := series[0].Summary()
	for i, r := range rows {
		ratio := loadgen.Compare(series[i+1].Summary(), quiet)
		goal := ""
		if r.kernel && r.load == load {
			goal = " (goal: p99 ≤ 1.5x)"
		}
		fmt.Printf("ratio victim %s / quiet: p50 %.2fx, p99 %.2fx%s\n", r.name, ratio.P50, ratio.P99, goal)
	}
	for _, r := range rows {
		fmt.Printf("  %s: the neighbour held at most %d connections, was refused %d connections and flooded %d requests\n",
			r.name, r.stats.Held, r.stats.Refused, r.stats.Flooded)
	}
	if errs := errorsIn(series); errs > 0 {
		return fmt.Errorf("%d victim requests failed beside the noisy neighbour (first: %s)", errs, firstError(series))
	}
	return nil
}

// defaultMaxConnsPerAddress is the agent's --max-connections-per-address
// default, which the bench's agent runs with: the kernel cap gets the same.
const defaultMaxConnsPerAddress = 32

// benchCapTable is the nftables table (ip, ip6) the bench's kernel cap
// lives in: its own, so it never touches a node's podcreds tables, and a run
// killed before it removed the cap has it replaced by the next run.
const benchCapTable = "podcreds-bench"

// kernelCap installs and removes the product's kernel connection cap
// (netsetup.InstallConnCap) around the rows that measure it. err says why
// it cannot be measured at all (not root, no connlimit in the kernel);
// failed is the first install or removal that failed mid-run.
type kernelCap struct {
	cap    netsetup.ConnCap
	rules  []string
	err    error
	failed error
	cur    *netsetup.ConnCapTable
}

// newKernelCap checks, by installing and removing it once, that the cap can
// be measured here; that also clears a cap a killed run left behind.
func newKernelCap(c netsetup.ConnCap) *kernelCap {
	k := &kernelCap{cap: c}
	if os.Geteuid() != 0 {
		k.err = errors.New("not root (installing nftables rules needs CAP_NET_ADMIN; run the bench as root to measure it)")
		return k
	}
	t, err := netsetup.InstallConnCap(benchCapTable, c)
	if err != nil {
		k.err = fmt.Errorf("could not be installed: %w", err)
		return k
	}
	k.rules = t.Rules
	if err := t.Remove(); err != nil {
		k.err = err
	}
	return k
}

func (k *kernelCap) install() {
	if k.err != nil || k.cur != nil {
		return
	}
	t, err := netsetup.InstallConnCap(benchCapTable, k.cap)
	if err != nil {
		k.failed = cmp.Or(k.failed, err)
		return
	}
	k.cur = t
}

// remove takes the cap out; after a round, at the end and on an error or
// interrupt alike (Interleave stops each round's neighbour, and runNoisy
// defers this).
func (k *kernelCap) remove() {
	if k.cur == nil {
		return
	}
	if err := k.cur.Remove(); err != nil {
		k.failed = cmp.Or(k.failed, err)
		return
	}
	k.cur = nil
}

// neighbourStats is what the neighbour process reports when it stops.
type neighbourStats struct{ Held, Refused, Flooded int }

// startNeighbour runs the neighbour in its own process (this binary, re-run),
// as a pod is one: its goroutines and dials do not share the victim's
// scheduler. It holds for a second before the round starts (it hoards
// continuously: measure while it holds, not while it opens), and the
// returned function stops it and adds what it did to stats.
func startNeighbour(ctx context.Context, target string, ip netip.Addr, load neighbourLoad, stats *neighbourStats) func() {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(self, "-serve-neighbour="+target, "-neighbour-ip="+ip.String(),
		fmt.Sprintf("-neighbour-conns=%d", load.conns), fmt.Sprintf("-neighbour-flood=%d", load.flood))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	p, err := proc.Start(cmd, nil)
	if err != nil {
		panic(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	return func() {
		_ = p.Stop(10 * time.Second)
		var s neighbourStats
		if _, err := fmt.Sscanf(out.String(), "held %d refused %d flooded %d", &s.Held, &s.Refused, &s.Flooded); err == nil {
			stats.Held = max(stats.Held, s.Held)
			stats.Refused += s.Refused
			stats.Flooded += s.Flooded
		}
	}
}

// serveNeighbour is the neighbour process: it hoards and floods until
// SIGTERM, then prints what it did.
func serveNeighbour(target, ipStr string, load neighbourLoad) error {
	ip, err := netip.ParseAddr(ipStr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var held, refused, flooded countSet
	neighbour(ctx, target, ip, load, &held, &refused, &flooded)()
	fmt.Printf("held %d refused %d flooded %d\n", held.max(), refused.total(), flooded.total())
	return nil
}

// neighbour starts the hoarding and the flood; the returned function waits
// for both to end with ctx.
func neighbour(ctx context.Context, target string, ip netip.Addr, load neighbourLoad, held, refused, flooded *countSet) func() {
	var wg sync.WaitGroup
	var open countSet
	for range load.conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				if hoardOne(ctx, target, ip, &open, held) {
					continue
				}
				refused.add(1)
				select { // a client's backoff
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		})
	}
	if load.flood <= 0 {
		return wg.Wait
	}
	wg.Go(func() {
		res, _ := loadgen.Run(ctx, loadgen.Config{
			URL: "http://" + target + "/v1/credentials", Sources: []netip.Addr{ip}, KeepAlive: true,
			Concurrency: 1, Interval: time.Second / time.Duration(load.flood), Duration: time.Hour, RequestTimeout: 2 * time.Second,
		})
		flooded.add(res.Requests)
	})
	return wg.Wait
}

// hoardOne opens a connection from ip, asks once and, if answered 200, holds
// the connection until the agent closes it or ctx ends. It reports whether
// it was served.
func hoardOne(ctx context.Context, target string, ip netip.Addr, open, held *countSet) bool {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /v1/credentials HTTP/1.1\r\nHost: %s\r\n\r\n", target); err != nil {
		return false
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false
	}
	held.setMax(open.add(1))
	defer open.add(-1)
	_ = c.SetDeadline(time.Time{})
	_, _ = br.ReadByte() // returns when the agent closes it (idle timeout) or ctx ends
	return true
}

// countSet is a counter that also remembers its largest value.
type countSet struct {
	mu     sync.Mutex
	n, top int
}

func (c *countSet) add(d int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	c.top = max(c.top, c.n)
	return c.n
}

func (c *countSet) setMax(v int) {
	c.mu.Lock()
	c.top = max(c.top, v)
	c.mu.Unlock()
}

func (c *countSet) max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.top
}

func (c *countSet) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func firstError(series []loadgen.Series) string {
	for _, s := range series {
		for _, r := range s.Results {
			if r.FirstError != "" {
				return r.FirstError
			}
		}
	}
	return ""
}
