// Command hotpath measures podcreds' credential hot path against its ceiling:
// a bare net/http server answering a JSON body of the same size. Both run as
// their own processes (on the upper half of the CPUs, with -pin); the load
// generator in this one hits them from many pod addresses, with keep-alive
// and with a new connection per request, in interleaved rounds (order
// alternating) and in rounds where both are under load at once
// (loadgen.Together), and prints medians and ratios measured side by side.
//
// The agent is the real binary against a real kube-apiserver and MinIO STS
// (internal/testkit/testenv); its cache is warm before measuring, so the rounds
// measure exactly what a pod's SDK gets in steady state.
//
//	go run ./bench/hotpath -agent bin/podcreds
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/bench/bare"
	"github.com/podcreds/podcreds/bench/loadgen"
	"github.com/podcreds/podcreds/internal/testkit/proc"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// options is what a run measures and how, from the flags.
type options struct {
	agentBin         string
	pods, rounds     int
	round            time.Duration
	conc, pacedRate  int
	pin, together    bool
	onlyTogether     bool
	noisy, onlyNoisy bool
	nr               noisyRun
}

func main() {
	var o options
	flag.StringVar(&o.agentBin, "agent", "bin/podcreds", "podcreds binary")
	flag.IntVar(&o.pods, "pods", 32, "pods (source addresses) on the node")
	// Many short rounds rather than a few long ones: on a shared machine a
	// round's CPU per response moves by a tenth with the neighbours' load,
	// and the paired ratio's median steadies with the number of pairs.
	flag.IntVar(&o.rounds, "rounds", 15, "rounds per target")
	flag.DurationVar(&o.round, "round", time.Second, "length of one round")
	// The noisy-neighbour rounds stay long: each starts its neighbour anew.
	flag.IntVar(&o.nr.rounds, "noisy-rounds", 5, "interleaved rounds per noisy-neighbour target")
	flag.DurationVar(&o.nr.round, "noisy-round", 2*time.Second, "length of one noisy-neighbour round")
	flag.IntVar(&o.conc, "concurrency", 4, "concurrent client connections")
	serveNeighbourAt := flag.String("serve-neighbour", "", "internal: be the noisy neighbour of the agent at this address")
	neighbourIP := flag.String("neighbour-ip", "", "internal: the noisy neighbour's pod address")
	flag.IntVar(&o.nr.load.conns, "neighbour-conns", defaultNeighbour.conns, "connections the noisy neighbour opens and holds (0: none)")
	flag.IntVar(&o.nr.load.flood, "neighbour-flood", defaultNeighbour.flood, "requests/s the noisy neighbour floods with (0: none)")
	flag.BoolVar(&o.noisy, "noisy", true, "also measure a victim pod beside a noisy neighbour (an agent with the default limits)")
	flag.BoolVar(&o.onlyNoisy, "only-noisy", false, "measure only the victim beside the noisy neighbour")
	flag.BoolVar(&o.nr.split, "noisy-split", true, "beside the noisy neighbour, also measure its hoarding and its flood apart (with the kernel cap)")
	flag.BoolVar(&o.together, "together", true, "also compare CPU per response with the agent and the bare server under load at the same time")
	flag.BoolVar(&o.onlyTogether, "only-together", false, "compare only with the agent and the bare server under load at the same time")
	flag.BoolVar(&o.pin, "pin", true, "run the servers measured on the upper half of the CPUs and the load generator on the lower half (on a single CPU the run is not pinned)")
	flag.IntVar(&o.pacedRate, "paced-rate", 2000, "also compare the container endpoint at this fixed total rate (requests/s; 0: not)")
	serveBare := flag.String("serve-bare", "", "internal: serve the bare ceiling on this address with -body-size bytes")
	bodySize := flag.Int("body-size", 0, "internal: bare body size")
	flag.Parse()

	if *serveBare != "" {
		if err := runBare(*serveBare, *bodySize); err != nil {
			fmt.Fprintln(os.Stderr, "bare:", err)
			os.Exit(1)
		}
		return
	}
	if *serveNeighbourAt != "" {
		if err := serveNeighbour(*serveNeighbourAt, *neighbourIP, o.nr.load); err != nil {
			fmt.Fprintln(os.Stderr, "neighbour:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "hotpath:", err)
		os.Exit(1)
	}
}

// noisyRun is how the noisy-neighbour rows run.
type noisyRun struct {
	rounds int
	round  time.Duration
	load   neighbourLoad
	split  bool
}

func run(ctx context.Context, o options) error {
	agentBin, pods, rounds, round, conc, pacedRate := o.agentBin, o.pods, o.rounds, o.round, o.conc, o.pacedRate
	nr := o.nr
	agentBin, err := filepath.Abs(agentBin)
	if err != nil {
		return err
	}
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return err
	}
	defer env.Stop()

	const ns, node = "bench", "bench-node"
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		return err
	}
	var sources []netip.Addr
	var pod0Token string
	for i := range pods {
		ip := netip.AddrFrom4([4]byte{127, 50, byte(i / 250), byte(i%250 + 1)})
		sources = append(sources, ip)
		pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: fmt.Sprintf("app-%d", i), ServiceAccount: "app", Node: node, IP: ip})
		if err != nil {
			return err
		}
		if i == 0 { // the projected token pod 0 presents (audience: the agent's default)
			tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				Audiences: []string{"podcreds"}, BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
			}}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			pod0Token = tr.Status.Token
		}
	}
	kubeconfig := filepath.Join(env.Dir, "agent.kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig, ""); err != nil {
		return err
	}
	if o.onlyNoisy {
		return runNoisy(ctx, env, agentBin, kubeconfig, nr.rounds, nr.round, nr.load, nr.split)
	}
	var pin *cpuSplit
	if o.pin {
		s, err := splitCPUs()
		switch {
		case errors.Is(err, errOneCPU):
			fmt.Printf("servers not pinned: %v\n", err) // measured all the same, on the one CPU
		case err != nil:
			return err
		default:
			if err := pinProcess(s.rest); err != nil {
				return err
			}
			pin = &s
		}
	}
	agentAddr, imdsAddr, healthAddr, bareAddr, bareIMDSAddr := freeAddr(), freeAddr(), freeAddr(), freeAddr(), freeAddr()
	agent, agentLog, err := startAgent(ctx, pin, agentBin, healthAddr, "--node-name="+node, "--kubeconfig="+kubeconfig,
		"--listen="+agentAddr, "--ecs-listen=none", "--imds-listen="+imdsAddr, "--health-listen="+healthAddr, "--metrics-listen=",
		"--sts-endpoint="+env.STSEndpoint, "--log-level=warn",
		// Every defence runs, but the per-address limit (50/s by default)
		// is set out of reach: it is a policy, and a load generator from
		// 32 addresses would measure 429s. The noisy-neighbour rows run
		// an agent with the defaults.
		"--rate-limit=1e9", "--rate-burst=1000000000")
	if err != nil {
		return err
	}
	defer func() { _ = agent.Stop(10 * time.Second) }()

	url := "http://" + agentAddr + "/v1/credentials"
	body, err := warm(ctx, url, sources)
	if err != nil {
		return fmt.Errorf("warming the agent: %w\n%s", err, agentLog.String())
	}
	// IMDS: a session token is bound to one pod, so these rounds come from
	// one pod address with its token; the bare ceiling gets the same.
	imdsURL := "http://" + imdsAddr + "/latest/meta-data/iam/security-credentials/"
	imdsHeader, imdsBody, err := imdsSession(ctx, "http://"+imdsAddr, sources[0])
	if err != nil {
		return fmt.Errorf("IMDS session: %w\n%s", err, agentLog.String())
	}
	imdsURL += string(imdsBody.role)
	var bareCPU []loadgen.CPUSampler
	for _, b := range []struct {
		addr string
		size int
	}{{bareAddr, len(body)}, {bareIMDSAddr, len(imdsBody.creds)}} {
		pid, stop, err := startBare(ctx, pin, b.addr, b.size)
		if err != nil {
			return err
		}
		defer stop()
		bareCPU = append(bareCPU, loadgen.ProcessCPU(pid))
	}
	agentCPU := loadgen.ProcessCPU(agent.Pid())
	cpuOf := func(name string, imds bool) loadgen.CPUSampler {
		switch {
		case name != "bare":
			return agentCPU
		case imds:
			return bareCPU[1]
		default:
			return bareCPU[0]
		}
	}

	var targets []loadgen.Target
	for _, keepAlive := range []bool{true, false} {
		for _, t := range []struct{ name, url string }{{"bare", "http://" + bareAddr + "/"}, {"podcreds", url}} {
			targets = append(targets, loadgen.Target{Name: t.name, CPU: cpuOf(t.name, false), Config: loadgen.Config{
				URL: t.url, Sources: sources, KeepAlive: keepAlive, Concurrency: conc,
				Duration: round, ExpectBodyLen: len(body),
			}})
		}
	}
	// The same load offered at a fixed rate both servers keep up with: in
	// the rounds above each runs as fast as it can, so costs that come per
	// second rather than per response (the runtime's sysmon, idle polling)
	// are spread over fewer responses for the slower one. At equal
	// throughput the CPU per response compares the work per response alone.
	if pacedRate > 0 {
		for _, keepAlive := range []bool{true, false} {
			for _, t := range []struct{ name, url string }{{"bare", "http://" + bareAddr + "/"}, {"podcreds", url}} {
				name := fmt.Sprintf("%s@%d/s", t.name, pacedRate)
				targets = append(targets, loadgen.Target{Name: name, CPU: cpuOf(t.name, false), Config: loadgen.Config{
					URL: t.url, Sources: sources, KeepAlive: keepAlive, Concurrency: conc,
					Interval: time.Duration(conc) * time.Second / time.Duration(pacedRate),
					Duration: round, ExpectBodyLen: len(body),
				}})
			}
		}
	}
	// A pod presenting its projected token (--pod-token-verification=if-present,
	// the default): one pod's address, its token in Authorization.
	tokenHeader := http.Header{"Authorization": {pod0Token}}
	for _, keepAlive := range []bool{true, false} {
		for _, t := range []struct{ name, url string }{{"bare", "http://" + bareAddr + "/"}, {"podcreds+token", url}} {
			targets = append(targets, loadgen.Target{Name: t.name, CPU: cpuOf(t.name, false), Config: loadgen.Config{
				URL: t.url, Sources: sources[:1], KeepAlive: keepAlive, Concurrency: conc, Header: tokenHeader,
				Duration: round, ExpectBodyLen: len(body),
			}})
		}
	}
	for _, keepAlive := range []bool{true, false} {
		for _, t := range []struct{ name, url string }{{"bare", "http://" + bareIMDSAddr + "/"}, {"podcreds-imds", imdsURL}} {
			targets = append(targets, loadgen.Target{Name: t.name, CPU: cpuOf(t.name, true), Config: loadgen.Config{
				URL: t.url, Sources: sources[:1], KeepAlive: keepAlive, Concurrency: conc, Header: imdsHeader,
				Duration: round, ExpectBodyLen: len(imdsBody.creds),
			}})
		}
	}
	if o.onlyTogether {
		targets = nil
	}
	fmt.Printf("hot path: %d pods, %d rounds x %s per target, %d connections, body %d bytes\n", pods, rounds, round, conc, len(body))
	if pin != nil {
		fmt.Printf("servers on CPUs %s, load generator on CPUs %s\n", cpuList(pin.servers), cpuList(pin.rest))
	}
	var all []loadgen.Series
	for i := 0; i < len(targets); i += 2 {
		series, err := loadgen.Interleave(ctx, rounds, targets[i:i+2])
		if err != nil {
			return err
		}
		all = append(all, series...)
	}
	// The same two comparisons with both servers under load at once (see
	// loadgen.Together): the steadier measure of CPU per response on a
	// shared machine.
	if o.together || o.onlyTogether {
		for _, keepAlive := range []bool{true, false} {
			var pair []loadgen.Target
			for _, t := range []struct{ name, url string }{{"bare", "http://" + bareAddr + "/"}, {"podcreds", url}} {
				pair = append(pair, loadgen.Target{Name: t.name + " (together)", CPU: cpuOf(t.name, false), Config: loadgen.Config{
					URL: t.url, Sources: sources, KeepAlive: keepAlive, Concurrency: conc,
					Duration: round, ExpectBodyLen: len(body),
				}})
			}
			series, err := loadgen.Together(ctx, rounds, pair)
			if err != nil {
				return err
			}
			all = append(all, series...)
		}
	}
	if err := loadgen.FormatTable(os.Stdout, all[0].Name, all); err != nil {
		return err
	}
	for i := 0; i < len(all); i += 2 {
		r := loadgen.Compare(all[i+1].Summary(), all[i].Summary())
		p := loadgen.PairedCPU(all[i+1], all[i])
		fmt.Printf("ratio %s/bare (%s): req/s %.2fx, p50 %.2fx, p99 %.2fx, server CPU per response %.2fx (paired rounds: median %.2fx, quartiles %.2f-%.2fx, %d pairs)\n",
			all[i+1].Name, all[i].Config.Mode(), r.RPS, r.P50, r.P99, r.CPU, p.Median, p.Q1, p.Q3, p.Rounds)
	}
	if errs := errorsIn(all); errs > 0 {
		return fmt.Errorf("%d requests failed during the run", errs)
	}
	if !o.noisy || o.onlyTogether {
		return nil
	}
	// The noisy-neighbour rows measure latency on the whole machine.
	if pin != nil {
		if err := pinProcess(pin.all); err != nil {
			return err
		}
	}
	return runNoisy(ctx, env, agentBin, kubeconfig, nr.rounds, nr.round, nr.load, nr.split)
}

// warm requests credentials once from every pod, so the rounds measure the
// steady state, and returns the body served.
func warm(ctx context.Context, url string, sources []netip.Addr) ([]byte, error) {
	var body []byte
	for _, ip := range sources {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}}
		c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		res, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		body, err = io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("from %s: %d %s %v", ip, res.StatusCode, body, err)
		}
	}
	return body, nil
}

// startAgent runs the agent binary with args (on pin's server CPUs unless
// pin is nil) and waits until its health address says it is ready. The
// returned log holds its output.
func startAgent(ctx context.Context, pin *cpuSplit, bin, healthAddr string, args ...string) (*proc.Process, *bytes.Buffer, error) {
	cmd := exec.Command(bin, append([]string{"agent"}, args...)...)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	p, err := startOn(pin, cmd)
	if err != nil {
		return nil, nil, err
	}
	if err := waitOK(ctx, "http://"+healthAddr+"/readyz", 30*time.Second); err != nil {
		_ = p.Stop(10 * time.Second)
		return nil, nil, fmt.Errorf("agent not ready: %w\n%s", err, log.String())
	}
	return p, log, nil
}

type imdsAnswer struct{ role, creds []byte }

// imdsSession does what an SDK does once: get a session token, list the
// role, fetch its credentials. It returns the token header and the bodies.
func imdsSession(ctx context.Context, base string, ip netip.Addr) (http.Header, imdsAnswer, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
	do := func(method, path string, h http.Header) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, method, base+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		res, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err == nil && res.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, b)
		}
		return b, err
	}
	token, err := do(http.MethodPut, "/latest/api/token", http.Header{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": {"21600"}})
	if err != nil {
		return nil, imdsAnswer{}, err
	}
	h := http.Header{"X-Aws-Ec2-Metadata-Token": {string(token)}}
	var a imdsAnswer
	if a.role, err = do(http.MethodGet, "/latest/meta-data/iam/security-credentials/", h); err != nil {
		return nil, a, err
	}
	a.creds, err = do(http.MethodGet, "/latest/meta-data/iam/security-credentials/"+string(a.role), h)
	return h, a, err
}

// startOn starts cmd on pin's server CPUs, or where this process runs if
// pin is nil.
func startOn(pin *cpuSplit, cmd *exec.Cmd) (*proc.Process, error) {
	if pin == nil {
		return proc.Start(cmd, nil)
	}
	var p *proc.Process
	err := onCPUs(pin.servers, func() (err error) {
		p, err = proc.Start(cmd, nil)
		return err
	})
	return p, err
}

// startBare runs the bare ceiling in its own process (this binary, re-run,
// on pin's server CPUs unless pin is nil) and returns its pid.
func startBare(ctx context.Context, pin *cpuSplit, addr string, size int) (int, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(self, "-serve-bare="+addr, fmt.Sprintf("-body-size=%d", size))
	cmd.Stderr = os.Stderr
	p, err := startOn(pin, cmd)
	if err != nil {
		return 0, nil, err
	}
	stop := func() { _ = p.Stop(10 * time.Second) }
	if err := waitOK(ctx, "http://"+addr+"/", 10*time.Second); err != nil {
		stop()
		return 0, nil, err
	}
	return p.Pid(), stop, nil
}

func runBare(addr string, size int) error {
	body := bytes.Repeat([]byte("x"), size)
	if size >= 2 {
		body[0], body[size-1] = '"', '"' // a JSON string of the same length
	}
	return http.ListenAndServe(addr, bare.NewHandler(body))
}

func errorsIn(series []loadgen.Series) int {
	n := 0
	for _, s := range series {
		for _, r := range s.Results {
			n += r.Errors
		}
	}
	return n
}

// freeAddr returns a loopback address with a port free now and never
// returned before: the kernel may hand a port just closed to the next
// listener, and two of the agent's listeners given one address refuse to
// start.
func freeAddr() string {
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

func waitOK(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
