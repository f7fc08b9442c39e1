//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podcreds/podcreds/netsetup"
)

// agentProcess is the agent binary, its output in a log file.
type agentProcess struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited
	err  error         // its exit status, once done
}

func startAgent(bin string, args []string, logPath string) (*agentProcess, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.TempDir()}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start the agent: %w", err)
	}
	a := &agentProcess{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		f.Close()
		close(a.done)
	}()
	return a, nil
}

// waitReady polls the agent's readiness endpoint (another process's: there
// is nothing to subscribe to) until it answers 200.
func (a *agentProcess) waitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		res, err := client.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, res.Status)
		}
		last = err
		select {
		case <-a.done:
			return fmt.Errorf("the agent exited (%v) before it was ready:\n%s", a.err, a.tail(30))
		case <-ctx.Done():
			return fmt.Errorf("the agent was not ready within %s (%v):\n%s", timeout, last, a.tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits for a clean exit; after grace it kills.
func (a *agentProcess) stop(grace time.Duration) error {
	select {
	case <-a.done:
		return a.err
	default:
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-a.done:
		return a.err
	case <-time.After(grace):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
		return fmt.Errorf("still running %s after SIGTERM; killed", grace)
	}
}

// crash kills the agent outright: no cleanup runs.
func (a *agentProcess) crash() {
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
}

func (a *agentProcess) tail(n int) string {
	b, err := os.ReadFile(a.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "    " + strings.Join(lines[max(0, len(lines)-n):], "\n    ")
}

// wantRedirect says whether checkNode expects the IMDS redirect installed.
type wantRedirect bool

// checkNode asserts, with iproute2 and nft rather than the code under test,
// that the node namespace holds exactly one address-carrying interface
// (podcreds0) with exactly the agent's addresses, and exactly one DNAT rule
// (with a jump per pod interface pattern) or none.
func checkNode(t *testing.T, redirect wantRedirect) {
	t.Helper()
	out, err := output("ip", "-j", "-d", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Name  string   `json:"ifname"`
		Flags []string `json:"flags"`
		Info  struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("ip -j link: %v", err)
	}
	var ours []string
	for _, l := range links {
		if l.Info.Kind == "dummy" || l.Info.Kind == "ifb" {
			ours = append(ours, l.Name+" ("+l.Info.Kind+")")
			if l.Name == netsetup.DefaultInterface && !slices.Contains(l.Flags, "UP") {
				t.Errorf("%s is not up: %v", l.Name, l.Flags)
			}
		}
	}
	if len(ours) != 1 || !strings.HasPrefix(ours[0], netsetup.DefaultInterface+" ") {
		t.Errorf("address-carrying interfaces %v, want exactly %s", ours, netsetup.DefaultInterface)
	}

	out, err = output("ip", "-j", "addr", "show", "dev", netsetup.DefaultInterface)
	if err != nil {
		t.Fatal(err)
	}
	var ifaces []struct {
		Addrs []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &ifaces); err != nil || len(ifaces) != 1 {
		t.Fatalf("ip -j addr: %v (%d interfaces)", err, len(ifaces))
	}
	var got, want []string
	for _, a := range ifaces[0].Addrs {
		got = append(got, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
	}
	for _, p := range netsetup.DefaultAddresses() {
		want = append(want, p.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s has %v, want exactly %v", netsetup.DefaultInterface, got, want)
	}

	out, err = output("nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	tables := strings.Count(out, "table ip "+netsetup.TableName+" {")
	if !redirect {
		if tables != 0 || strings.Contains(out, "dnat") {
			t.Errorf("the IMDS redirect is still installed:\n%s", out)
		}
		return
	}
	// The kernel's per-source cap (--max-connections-per-address, 32) on
	// every listener pods reach, IMDS's after its DNAT.
	for _, l := range []string{"169.254.170.23 tcp dport 80", "169.254.170.2 tcp dport 80", strings.Replace(imdsListen, ":", " tcp dport ", 1)} {
		rule := "ip daddr " + l + " tcp flags syn / fin,syn,rst,ack add @" + netsetup.ConnCapSet + " { ip saddr ct count over 32 } reject with tcp reset"
		if n := strings.Count(out, rule); n != 1 {
			t.Errorf("%q appears %d times in the ruleset, want once:\n%s", rule, n, out)
		}
	}
	jumps := strings.Count(out, "jump "+netsetup.IMDSChain)
	if tables != 1 || strings.Count(out, "dnat to") != 1 || strings.Count(out, "tcp dport 80 dnat to "+imdsListen) != 1 || jumps != len(netsetup.DefaultPodInterfaces) {
		t.Errorf("want exactly one table ip %s with one DNAT rule to %s and %d jumps; the node has %d tables, %d jumps:\n%s",
			netsetup.TableName, imdsListen, len(netsetup.DefaultPodInterfaces), tables, jumps, out)
	}
}

// agentLogMentions reports whether the current agent's log contains s.
func (s *state) agentLogMentions(str string) bool {
	b, err := os.ReadFile(s.agent.log)
	return err == nil && bytes.Contains(b, []byte(str))
}
