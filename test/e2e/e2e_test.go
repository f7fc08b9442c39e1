//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podcreds/podcreds/netsetup"
)

// The tests run in this order and share one node; each leaves the agent
// running for the next.

func TestLinkSetupGaveTheNodeItsAddressesAndOneRedirect(t *testing.T) {
	checkNode(t, true)
	if !suite.agentLogMentions("link setup") {
		t.Errorf("the agent did not log its link setup:\n%s", suite.agent.tail(20))
	}
	hosts := []string{"169.254.170.23", "169.254.170.2"}
	if netsetup.IPv6Enabled() {
		hosts = append(hosts, "[fd00:ec2::23]")
	}
	for _, h := range hosts {
		// The node is not a pod: the agent refuses it, but it answers.
		if code, _, err := get("http://" + h + "/v1/credentials"); err != nil || code != 404 {
			t.Errorf("GET http://%s/v1/credentials from the node: %d, %v; want the agent's 404", h, code, err)
		}
	}
}

func TestTheNodeStillReachesItsOwnIMDS(t *testing.T) {
	code, body, err := get("http://169.254.169.254/latest/meta-data/")
	if err != nil || code != 200 || body != realIMDSBody {
		t.Fatalf("the node's own request to 169.254.169.254 got %d %q (%v), want its real IMDS: the redirect must apply to pods only", code, body, err)
	}
}

// TestUnmodifiedClients runs every client through every endpoint in one pod
// and records the compatibility table.
func TestUnmodifiedClients(t *testing.T) {
	for _, c := range clients {
		for _, e := range endpoints {
			t.Run(c.name+" via "+e.name, func(t *testing.T) {
				o, err := use(suite.podA, c, e)
				suite.compat.record(c, e, o, err)
				switch {
				case err != nil:
					t.Fatal(err)
				case o.OK:
					checkProvider(t, c, e, o)
				case e.refusable && o.refused():
					t.Logf("%s %s refuses %s before asking (recorded): %s", c.name, o.Version, e.name, o.Error)
				default:
					t.Fatalf("%s %s via %s failed: %s", c.name, o.Version, e.name, o.Error)
				}
			})
		}
	}
}

// checkProvider makes sure the SDK's chain took the way the test meant, not
// another one that happened to work.
func checkProvider(t *testing.T, c client, e endpoint, o outcome) {
	t.Helper()
	if o.Provider == "" {
		return // the AWS CLI does not say
	}
	imds := strings.Contains(o.Provider, "EC2") || strings.Contains(o.Provider, "iam-role") || strings.Contains(o.Provider, "IMDS")
	if imds != (e.name == imdsV2.name) {
		t.Errorf("%s via %s: credentials came from provider %q", c.name, e.name, o.Provider)
	}
}

// clientAt names a client and the endpoint it is to use.
type clientAt struct {
	client   string
	endpoint endpoint
}

func TestEachPodGetsItsOwnServiceAccount(t *testing.T) {
	for _, tc := range []clientAt{
		{"aws-sdk-go-v2", fullURI23},
		{"AWS CLI", relativeURI},
		{"boto3", imdsV2},
		{"aws-sdk-js-v3", fullURI23},
	} {
		t.Run(tc.client+" in pod b", func(t *testing.T) {
			o, err := use(suite.podB, clientNamed(tc.client), tc.endpoint)
			if err != nil {
				t.Fatal(err)
			}
			if !o.OK {
				t.Fatalf("%s failed: %s", tc.client, o.Error)
			}
			if o.Sub == suite.podA.subject() {
				t.Fatalf("pod b got pod a's ServiceAccount %s", o.Sub)
			}
		})
	}
}

// hoardScript, run in a pod, opens argv[2] connections to argv[1] (host:port)
// as fast as it can and holds them: it prints how many the kernel let
// through and the first refusal, then waits for its stdin to close.
const hoardScript = `
import json, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
held, refused, first = [], 0, ""
for _ in range(int(sys.argv[2])):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
        held.append(s)
    except OSError as e:
        refused += 1
        first = first or str(e)
        s.close()
print(json.dumps({"held": len(held), "refused": refused, "first": first}), flush=True)
sys.stdin.read()
`

// One pod's connections past --max-connections-per-address (32) are refused
// by the node's kernel, counted per pod through the IMDS redirect's DNAT,
// before the agent accepts them (its own refusal counter does not move),
// while another pod is still served.
func TestOnePodsConnectionsAreCappedInTheKernel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	refusedBefore := agentConnectionsRefused(t)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", suite.podB.netns, "python3", "-c", hoardScript, netsetup.IMDSAddr.String(), "40")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("the hoarding pod: %v\n%s", err, stderr.String())
		}
	}()
	var got struct {
		Held, Refused int
		First         string
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || json.Unmarshal([]byte(line), &got) != nil {
		t.Fatalf("the hoarding pod said %q (%v)\n%s", line, err, stderr.String())
	}
	if got.Held != 32 || got.Refused != 8 || !strings.Contains(got.First, "refused") {
		t.Errorf("pod b opened 40 connections to %s: %d held, %d refused (first: %q); want 32 and 8 refused by the kernel (connection refused)",
			netsetup.IMDSAddr, got.Held, got.Refused, got.First)
	}
	// While pod b holds its share, pod a is answered.
	o, err := use(suite.podA, clientNamed("aws-sdk-go-v2"), fullURI23)
	if err != nil || !o.OK {
		t.Errorf("pod a beside pod b's 32 connections: %+v, %v", o, err)
	}
	if after := agentConnectionsRefused(t); after != refusedBefore {
		t.Errorf("the agent refused %.0f connections itself; want none to reach it past the kernel's cap", after-refusedBefore)
	}
}

// agentConnectionsRefused reads the agent's podcreds_http_connections_refused_total.
func agentConnectionsRefused(t *testing.T) float64 {
	t.Helper()
	code, body, err := get("http://127.0.0.1:8091/metrics")
	if err != nil || code != 200 {
		t.Fatalf("the agent's metrics: %d %v", code, err)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "podcreds_http_connections_refused_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("the agent's metrics have no podcreds_http_connections_refused_total:\n%s", body)
	return 0
}

func TestAgentRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stillWorking := func(t *testing.T, cases ...clientAt) {
		t.Helper()
		for _, tc := range cases {
			o, err := use(suite.podA, clientNamed(tc.client), tc.endpoint)
			if err != nil {
				t.Error(err)
			} else if !o.OK {
				t.Errorf("%s via %s after the restart: %s", tc.client, tc.endpoint.name, o.Error)
			}
		}
	}
	t.Run("a graceful restart keeps the link, replaces the redirect and drops stale addresses", func(t *testing.T) {
		if err := suite.agent.stop(20 * time.Second); err != nil {
			t.Fatalf("the agent did not exit cleanly on SIGTERM: %v\n%s", err, suite.agent.tail(20))
		}
		// While it is down: the addresses and the redirect stay, and a
		// pod's request is refused at once by the node's kernel (SDKs retry)
		// instead of leaving the node with the pod's token or reaching the
		// node's real IMDS.
		checkNode(t, true)
		podsNeverReachTheRealIMDS(t, ctx)
		out, stderr, err := inPod(ctx, suite.podA, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/python3", "-c", `
import socket
try:
    socket.create_connection(("169.254.170.23", 80), timeout=3)
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__, e)`)
		if err != nil || strings.TrimSpace(out) != "refused" {
			t.Errorf("a pod connecting to 169.254.170.23:80 while the agent is down: %q (%v %s), want refused", out, err, stderr)
		}
		// A leftover of an older configuration.
		if err := sh("ip", "addr", "add", "169.254.170.99/32", "dev", netsetup.DefaultInterface); err != nil {
			t.Fatal(err)
		}
		if err := suite.startAgent(ctx); err != nil {
			t.Fatal(err)
		}
		checkNode(t, true)
		stillWorking(t, clientAt{"aws-sdk-go-v2", fullURI23}, clientAt{"AWS CLI", relativeURI}, clientAt{"boto3", imdsV2}, clientAt{"aws-sdk-js-v3", fullURI23})
	})

	t.Run("after a crash the new agent leaves exactly one of everything", func(t *testing.T) {
		suite.agent.crash() // kill -9
		checkNode(t, true)
		podsNeverReachTheRealIMDS(t, ctx)
		if err := suite.startAgent(ctx); err != nil {
			t.Fatal(err)
		}
		checkNode(t, true)
		stillWorking(t, clientAt{"aws-sdk-go-v2", imdsV2}, clientAt{"boto3", relativeURI}, clientAt{"aws-sdk-js-v3", imdsV2})
	})
}

// podsNeverReachTheRealIMDS checks, while no agent runs, that a pod's
// request to 169.254.169.254 is refused, and that the node's IMDS stand-in
// has seen no request from a pod at all.
func podsNeverReachTheRealIMDS(t *testing.T, ctx context.Context) {
	t.Helper()
	out, stderr, err := inPod(ctx, suite.podA, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/python3", "-c", `
import urllib.request
try:
    print(urllib.request.urlopen("http://169.254.169.254/latest/meta-data/", timeout=3).read().decode(), end="")
except OSError as e:
    print("refused" if isinstance(getattr(e, "reason", e), ConnectionRefusedError) else repr(e))`)
	if err != nil || strings.TrimSpace(out) != "refused" {
		t.Errorf("a pod's request to 169.254.169.254 with no agent running: %q (%v %s), want refused", out, err, stderr)
	}
	podsNeverReachTheIPv6IMDS(t, ctx)
	if n := suite.podRequestsToRealIMDS(); n != 0 {
		t.Errorf("the node's IMDS stand-in has answered %d requests from pods, want 0", n)
	}
}

// podsNeverReachTheIPv6IMDS checks, on a node with IPv6, that a pod's
// request to EC2's IPv6 IMDS address gets no answer: the agent's IMDS is
// IPv4, so pods' packets to [fd00:ec2::254] are dropped, with or without it.
func podsNeverReachTheIPv6IMDS(t *testing.T, ctx context.Context) {
	t.Helper()
	if !suite.podA.ip6.IsValid() {
		return // the node has no IPv6: nothing to reach it over
	}
	out, stderr, err := inPod(ctx, suite.podA, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/python3", "-c", `
import urllib.request
try:
    print(urllib.request.urlopen("http://[fd00:ec2::254]/latest/meta-data/", timeout=2).read().decode(), end="")
except OSError as e:
    print("no answer" if "timed out" in str(e) else repr(e))`)
	if err != nil || strings.TrimSpace(out) != "no answer" {
		t.Errorf("a pod's request to [fd00:ec2::254]: %q (%v %s), want no answer", out, err, stderr)
	}
}

func TestPodsNeverReachTheNodesIPv6IMDS(t *testing.T) {
	if !netsetup.IPv6Enabled() {
		t.Skip("the node namespace has IPv6 off: EC2's IPv6 IMDS cannot be reached")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	podsNeverReachTheIPv6IMDS(t, ctx)
	if n := suite.podRequestsToRealIMDS(); n != 0 {
		t.Errorf("the node's IMDS stand-in has answered %d requests from pods, want 0", n)
	}
	// The node itself still reaches it: the refusal is for pods only.
	if code, body, err := get("http://[fd00:ec2::254]/latest/meta-data/"); err != nil || code != 200 || body != realIMDSBody {
		t.Errorf("the node's own request to [fd00:ec2::254] got %d %q (%v), want its IMDS", code, body, err)
	}
}

func TestAgentExitKeepsPodsFromTheNodesIMDSUntilUninstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := suite.agent.stop(20 * time.Second); err != nil {
		t.Fatalf("the agent did not exit cleanly on SIGTERM: %v\n%s", err, suite.agent.tail(20))
	}
	checkNode(t, true)
	podsNeverReachTheRealIMDS(t, ctx)

	// The explicit uninstall step gives the node back as it was.
	key := filepath.Join(suite.dir, "node", "imds-token.key") // the agent's --imds-key-file
	if _, err := os.Stat(key); err != nil {
		t.Fatalf("the agent left no IMDS token key to uninstall: %v", err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(suite.bin, "podcreds"), "uninstall-node", "--imds-key-file="+key).CombinedOutput()
	if err != nil {
		t.Fatalf("podcreds uninstall-node: %v\n%s", err, out)
	}
	if _, err := os.Lstat(key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after uninstall-node the IMDS token key %s is still there (%v)\n%s", key, err, out)
	}
	after, err := nodeState()
	if err != nil {
		t.Fatal(err)
	}
	if after != suite.beforeInstall {
		t.Errorf("after uninstall-node the node is\n%s\nwant it as before the agent first ran:\n%s", after, suite.beforeInstall)
	}
	// Pods reach the node's IMDS again: uninstalled means gone.
	got, stderr, err := inPod(ctx, suite.podA, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/python3", "-c",
		`import urllib.request; print(urllib.request.urlopen("http://169.254.169.254/latest/meta-data/", timeout=3).read().decode(), end="")`)
	if err != nil || got != realIMDSBody {
		t.Fatalf("a pod's request to 169.254.169.254 after uninstall-node got %q (%v %s), want the node's IMDS", got, err, stderr)
	}
	// And over IPv6, which also shows that the pods' IPv6 path works, so
	// the "no answer" before was the refusal and not a broken route.
	if suite.podA.ip6.IsValid() {
		got, stderr, err := inPod(ctx, suite.podA, []string{"PATH=/usr/bin:/bin"}, "/usr/bin/python3", "-c",
			`import urllib.request; print(urllib.request.urlopen("http://[fd00:ec2::254]/latest/meta-data/", timeout=3).read().decode(), end="")`)
		if err != nil || got != realIMDSBody {
			t.Fatalf("a pod's request to [fd00:ec2::254] after uninstall-node got %q (%v %s), want the node's IMDS", got, err, stderr)
		}
	}
}
