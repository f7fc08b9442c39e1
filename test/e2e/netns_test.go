//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/netsetup"
)

// The node's addresses, all inside the node namespace.
var (
	// nodeAddr is where pods reach the node's own services (MinIO): a
	// local address of the node, which is also the pods' default gateway.
	nodeAddr = netip.MustParseAddr("198.18.0.1")
	// realIMDS stands in for the node's real instance metadata service, so
	// the suite can tell that the node itself still reaches it.
	realIMDS = netip.MustParseAddr("169.254.169.254")
	// realIMDSv6 stands in for EC2's IPv6 instance metadata address, on
	// nodes with IPv6; podGatewayV6 is the node's link-local address on
	// each pod's veth, the pods' IPv6 default gateway.
	realIMDSv6   = netip.MustParseAddr("fd00:ec2::254")
	podGatewayV6 = netip.MustParseAddr("fe80::1")
)

// sh runs a command with a bounded time and returns its error with output.
func sh(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

func output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// removeLeftovers deletes every namespace named pce2e-*, after killing the
// processes still in it (an earlier run that crashed may have left its
// control plane or agent there). Deleting a namespace destroys its veths and
// nftables rules with it. With dirs, it also removes earlier runs' scratch
// directories.
func removeLeftovers(dirs bool) error {
	out, err := output("ip", "netns", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		pids, _ := output("ip", "netns", "pids", name)
		for _, f := range strings.Fields(pids) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := sh("ip", "netns", "del", name); err != nil {
			return err
		}
	}
	if dirs {
		old, _ := filepath.Glob(filepath.Join(os.TempDir(), scratchPrefix+"*"))
		for _, d := range old {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// setUpNodeNetwork readies the node namespace the suite runs in: loopback up,
// the address pods reach the node on, and a stand-in for the real IMDS.
func setUpNodeNetwork() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", nodeAddr.String() + "/32", "dev", "lo"},
		{"addr", "add", realIMDS.String() + "/32", "dev", "lo"},
	} {
		if err := sh("ip", args...); err != nil {
			return err
		}
	}
	if netsetup.IPv6Enabled() {
		return sh("ip", "-6", "addr", "add", realIMDSv6.String()+"/128", "dev", "lo", "nodad")
	}
	return nil
}

// pod is a pod of the suite: a network namespace with a veth to the node, a
// Pod object with its address, and its projected token in a file.
type pod struct {
	name, namespace, serviceAccount string
	netns, hostVeth                 string
	ip                              netip.Addr // IPv4; invalid for an IPv6-only pod
	ip6                             netip.Addr // on nodes with IPv6; else invalid
	dir                             string     // its files: token, clients' homes
	tokenFile                       string
}

// subject is the web identity MinIO records for the pod's credentials.
func (p *pod) subject() string {
	return "system:serviceaccount:" + p.namespace + ":" + p.serviceAccount
}

// newPod wires the pod's network as a CNI plugin would (ptp style: a /32 on
// the pod's eth0, the node as its gateway, a host route back on the node),
// then plays kubelet: registers the pod as Running with its IP on the node
// and writes its projected token (audience podcreds, bound to the pod).
//
// An IPv6 ip makes an IPv6-only pod (needs IPv6 on the node); an IPv4 one
// makes a dual-stack pod where the node has IPv6, and registers both
// addresses in status.podIPs, as a dual-stack CNI does.
func newPod(ctx context.Context, env *testenv.Env, dir, short, namespace, sa string, ip netip.Addr) (*pod, error) {
	p := &pod{
		name: "app-" + short, namespace: namespace, serviceAccount: sa,
		netns: nsPrefix + short, hostVeth: "vethpce2e" + short,
		dir: filepath.Join(dir, "pod-"+short),
	}
	if ip.Is4() {
		p.ip = ip
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, err
	}
	if err := p.wire(); err != nil {
		return p, err
	}
	if ip.Is6() || netsetup.IPv6Enabled() {
		// The same for IPv6, with the node's link-local address on the veth
		// as the gateway: fd00:198:18::<last byte of the IPv4 address>.
		p.ip6 = ip
		if ip.Is4() {
			p.ip6 = netip.MustParseAddr(fmt.Sprintf("fd00:198:18::%d", ip.As4()[3]))
		}
		for _, args := range [][]string{
			{"-6", "addr", "add", podGatewayV6.String() + "/64", "dev", p.hostVeth, "nodad"},
			{"-6", "route", "add", p.ip6.String() + "/128", "dev", p.hostVeth},
			{"-n", p.netns, "-6", "addr", "add", p.ip6.String() + "/128", "dev", "eth0", "nodad"},
			{"-n", p.netns, "-6", "route", "add", "default", "via", podGatewayV6.String(), "dev", "eth0"},
		} {
			if err := sh("ip", args...); err != nil {
				return p, err
			}
		}
	}
	created, err := env.RunPod(ctx, testenv.PodSpec{Namespace: namespace, Name: p.name, ServiceAccount: sa, Node: nodeName, IPs: []netip.Addr{p.ip, p.ip6}})
	if err != nil {
		return p, err
	}
	expiry := int64(3600)
	tr, err := env.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{"podcreds"},
			ExpirationSeconds: &expiry,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: created.Name, UID: created.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return p, fmt.Errorf("projected token for pod %s/%s: %w", namespace, p.name, err)
	}
	p.tokenFile = filepath.Join(p.dir, "token")
	return p, os.WriteFile(p.tokenFile, []byte(tr.Status.Token), 0o600)
}

// wire gives the pod its network as a CNI plugin would (ptp style: a /32
// on the pod's eth0, the node as its gateway, a host route back on the node).
func (p *pod) wire() error {
	steps := [][]string{
		{"netns", "add", p.netns},
		{"link", "add", p.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", p.netns},
		{"link", "set", p.hostVeth, "up"},
		{"-n", p.netns, "link", "set", "lo", "up"},
		{"-n", p.netns, "link", "set", "eth0", "up"},
	}
	if p.ip.IsValid() { // not IPv6-only
		steps = append(steps, [][]string{
			{"route", "add", p.ip.String() + "/32", "dev", p.hostVeth},
			{"-n", p.netns, "addr", "add", p.ip.String() + "/32", "dev", "eth0"},
			{"-n", p.netns, "route", "add", nodeAddr.String(), "dev", "eth0", "scope", "link"},
			{"-n", p.netns, "route", "add", "default", "via", nodeAddr.String(), "dev", "eth0"},
		}...)
	}
	for _, args := range steps {
		if err := sh("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes the pod's namespace; its veth goes with it.
func (p *pod) remove() {
	if p != nil {
		_ = sh("ip", "netns", "del", p.netns)
	}
}
