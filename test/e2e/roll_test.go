//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podcreds/podcreds/netsetup"
)

// rollRequest is one request rollclient made (see its doc).
type rollRequest struct {
	Loop    string  `json:"loop"`
	StartMS float64 `json:"startMs"`
	Millis  float64 `json:"ms"`
	Error   string  `json:"error,omitempty"`
}

// rollClient is rollclient running in a pod until stopped.
type rollClient struct {
	label string
	p     *pod
	cmd   *exec.Cmd
	out   bytes.Buffer
	errb  bytes.Buffer
}

func startRollClient(t *testing.T, label string, p *pod, args ...string) *rollClient {
	t.Helper()
	rc := &rollClient{label: label, p: p}
	rc.cmd = exec.Command("ip", append([]string{"netns", "exec", p.netns, filepath.Join(suite.bin, "rollclient"), "-token-file=" + p.tokenFile}, args...)...)
	rc.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	rc.cmd.Stdout, rc.cmd.Stderr = &rc.out, &rc.errb
	rc.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := rc.cmd.Start(); err != nil {
		t.Fatalf("start rollclient in %s: %v", p.name, err)
	}
	return rc
}

// stop ends the client and returns its requests.
func (rc *rollClient) stop(t *testing.T) []rollRequest {
	t.Helper()
	_ = rc.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- rc.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("rollclient in %s: %v\n%s", rc.p.name, err, rc.errb.String())
		}
	case <-time.After(20 * time.Second):
		_ = rc.cmd.Process.Kill()
		t.Fatalf("rollclient in %s did not stop", rc.p.name)
	}
	var reqs []rollRequest
	if err := json.Unmarshal(rc.out.Bytes(), &reqs); err != nil {
		t.Fatalf("rollclient in %s printed no result (%v): %s", rc.p.name, err, rc.errb.String())
	}
	for i := range reqs {
		reqs[i].Loop = rc.label + ": " + reqs[i].Loop
	}
	return reqs
}

// window is a stretch of the run, in ms since the clients started.
type window struct {
	name     string
	from, to float64
	killed   bool    // the old agent was killed (kill -9), not stopped
	killMS   float64 // when, if killed
}

func (w window) holds(r rollRequest) bool { return r.StartMS+r.Millis >= w.from && r.StartMS <= w.to }

// TestRollingUpgradeLosesNoRequest rolls the agent as the DaemonSet does
// with maxSurge 1: a new agent starts beside the old one, becomes warm and
// joins the listening group, then the old one gets SIGTERM, leaves the group
// and drains. Both pods make steady requests all along, through the
// container endpoint and IMDS, over kept-alive and new connections, and
// over IPv6 too: the dual-stack pod a also asks [fd00:ec2::23], and an
// IPv6-only pod c asks only there, each identified by its IPv6 address
// (an address the agent does not know would be answered 404). Five
// such rolls must cost no failed request; the node's link, addresses and
// redirect stay intact after each. A sixth roll kills the old agent with
// kill -9 instead: only requests in flight on it at that moment may fail.
func TestRollingUpgradeLosesNoRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// An earlier test may have stopped the agent and uninstalled the node:
	// the rolls start from a node set up and served, as in production.
	select {
	case <-suite.agent.done:
		if err := suite.startAgent(ctx); err != nil {
			t.Fatal(err)
		}
	default:
	}
	checkNode(t, true)
	if !netsetup.IPv6Enabled() {
		t.Fatal("the node namespace has IPv6 off: the dual-stack and IPv6-only pods cannot be tested (enable IPv6 on this machine)")
	}
	podC, err := newPod(ctx, suite.env, suite.dir, "c", appsNS, "beta", netip.MustParseAddr("fd00:198:18::20"))
	defer podC.remove()
	if err != nil {
		t.Fatalf("the IPv6-only pod: %v", err)
	}
	const overV6 = "http://[fd00:ec2::23]/v1/credentials"
	t0 := time.Now()
	since := func() float64 { return float64(time.Since(t0).Microseconds()) / 1000 }
	clients := []*rollClient{
		startRollClient(t, "pod a (dual-stack) IPv4", suite.podA),
		startRollClient(t, "pod b (dual-stack) IPv4", suite.podB),
		startRollClient(t, "pod a (dual-stack) IPv6", suite.podA, "-container="+overV6, "-imds="),
		startRollClient(t, "pod c (IPv6 only)", podC, "-container="+overV6, "-imds="),
	}
	steady := func(d time.Duration) { time.Sleep(d) }
	steady(3 * time.Second)

	var rolls []window
	const graceful = 5
	for i := 1; i <= graceful+1; i++ {
		killed := i > graceful
		w := window{name: fmt.Sprintf("roll %d", i), from: since(), killed: killed}
		next, err := suite.launchAgent(ctx, 18100+2*i)
		if err != nil {
			if next != nil {
				next.crash()
			}
			t.Fatalf("roll %d: the new agent: %v", i, err)
		}
		// The new agent's exec probe answers for it alone, though the old
		// agent, still ready, shares the node's health port.
		if out, err := exec.Command(filepath.Join(suite.bin, "podcreds"), "probe", "-socket", suite.healthSocket(18100+2*i)).CombinedOutput(); err != nil {
			t.Errorf("roll %d: podcreds probe of the ready new agent: %v %s", i, err, out)
		}
		old := suite.agent
		suite.agent = next
		if killed {
			w.killMS = since()
			old.crash()
		} else if err := old.stop(20 * time.Second); err != nil {
			t.Fatalf("roll %d: the old agent did not leave cleanly on SIGTERM: %v\n%s", i, err, old.tail(20))
		}
		w.to = since()
		rolls = append(rolls, w)
		checkNode(t, true)
		steady(time.Second)
	}
	steady(2 * time.Second)
	var reqs []rollRequest
	for _, c := range clients {
		reqs = append(reqs, c.stop(t)...)
	}

	// Requests are attributed to the roll they overlap (a little slack for
	// the clients starting a few ms after t0), the rest are steady.
	const slack = 250
	var steadyMS []float64
	type tally struct {
		n, failed, inFlight int
		ms                  []float64
		errs                []string
	}
	per := make([]tally, len(rolls))
	for _, r := range reqs {
		in := -1
		for i, w := range rolls {
			if (window{from: w.from - slack, to: w.to + slack}).holds(r) {
				in = i
				break
			}
		}
		if in < 0 {
			steadyMS = append(steadyMS, r.Millis)
			if r.Error != "" {
				t.Errorf("a steady-state request failed (%s at %.0f ms): %s", r.Loop, r.StartMS, r.Error)
			}
			continue
		}
		tl := &per[in]
		tl.n++
		tl.ms = append(tl.ms, r.Millis)
		if rolls[in].killed && r.StartMS <= rolls[in].killMS+slack && r.StartMS+r.Millis >= rolls[in].killMS-slack {
			tl.inFlight++
		}
		if r.Error != "" {
			tl.failed++
			tl.errs = append(tl.errs, fmt.Sprintf("%s at %.0f ms: %s", r.Loop, r.StartMS, r.Error))
		}
	}
	perClient := map[string]int{}
	for _, r := range reqs {
		perClient[r.Loop[:strings.Index(r.Loop, ": ")]]++
	}
	for _, c := range clients {
		if perClient[c.label] == 0 {
			t.Errorf("%s made no request", c.label)
		}
		logf("rolls: %s: %d requests", c.label, perClient[c.label])
	}
	slices.Sort(steadyMS)
	if len(steadyMS) == 0 {
		t.Fatal("no steady-state requests: the run measured nothing")
	}
	logf("rolls: %d requests in all; steady state: %d requests, median %.1f ms, longest %.1f ms",
		len(reqs), len(steadyMS), steadyMS[len(steadyMS)/2], steadyMS[len(steadyMS)-1])
	for i, w := range rolls {
		tl := per[i]
		if tl.n == 0 {
			t.Errorf("%s: no request overlapped it: the roll was not under load", w.name)
			continue
		}
		slices.Sort(tl.ms)
		how := "SIGTERM"
		if w.killed {
			how = "kill -9"
		}
		logf("%s (%s, %.0f ms): %d requests, %d failed, median %.1f ms, longest %.1f ms",
			w.name, how, w.to-w.from, tl.n, tl.failed, tl.ms[len(tl.ms)/2], tl.ms[len(tl.ms)-1])
		switch {
		case !w.killed && tl.failed > 0:
			t.Errorf("%s: %d of %d requests failed, want none:\n  %s", w.name, tl.failed, tl.n, strings.Join(tl.errs, "\n  "))
		case w.killed && tl.failed > tl.inFlight:
			t.Errorf("%s (kill -9): %d requests failed, more than the %d in flight when it was killed:\n  %s",
				w.name, tl.failed, tl.inFlight, strings.Join(tl.errs, "\n  "))
		}
	}
}
