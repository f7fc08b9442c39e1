package netsetup

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// DefaultInterface is the interface Ensure creates unless told otherwise.
const DefaultInterface = "podcreds0"

// IMDSAddr is the instance metadata service's well-known address and port,
// which pods' SDKs ask when nothing else is configured.
var IMDSAddr = netip.MustParseAddrPort("169.254.169.254:80")

// The agent's well-known addresses, the hosts SDKs accept for plain http:
// AWS_CONTAINER_CREDENTIALS_FULL_URI's link-local host, the ECS host that
// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is appended to, and FULL_URI's IPv6
// host.
var (
	ContainerAddr   = netip.MustParsePrefix("169.254.170.23/32")
	ECSAddr         = netip.MustParsePrefix("169.254.170.2/32")
	ContainerAddrV6 = netip.MustParsePrefix("fd00:ec2::23/128")
)

// DefaultPodInterfaces are the node-side interface names of pods under the
// common CNI plugins (the package documentation says which is whose).
var DefaultPodInterfaces = []string{"veth+", "cali+", "eni+", "cni+", "lxc+", "gke+", "azv+"}

// Options says what Ensure sets up.
type Options struct {
	// Interface is the name of the interface that carries the addresses;
	// empty means DefaultInterface.
	Interface string
	// Addresses are exactly the addresses the interface ends up with, each a
	// host prefix (/32 or /128): a shorter prefix would route a whole range
	// into a device that delivers only locally. DefaultAddresses gives the
	// agent's.
	Addresses []netip.Prefix
	// IMDS, when set, redirects pods' traffic for 169.254.169.254:80 to the
	// agent. When nil, Ensure removes a redirect left by an earlier run.
	IMDS *IMDSOptions
	// ConnCap, when set, caps each source address's connections to the
	// agent's listeners in the kernel. When nil, Ensure removes a cap left
	// by an earlier run.
	ConnCap *ConnCap
}

// IMDSOptions says where pods' instance-metadata traffic goes.
type IMDSOptions struct {
	// ListenAddr is where the agent serves IMDS: an IPv4 address of this node
	// other than 169.254.169.254 and loopback, e.g. 169.254.170.23:8169.
	ListenAddr netip.AddrPort
	// PodInterfaces are patterns of the node-side interface names of pods
	// ("veth+": any name starting with veth). Only traffic arriving on those
	// is redirected.
	PodInterfaces []string
}

// DefaultAddresses returns the agent's addresses: 169.254.170.23 and
// 169.254.170.2, and fd00:ec2::23 when IPv6 is on.
func DefaultAddresses() []netip.Prefix {
	addrs := []netip.Prefix{ContainerAddr, ECSAddr}
	if IPv6Enabled() {
		addrs = append(addrs, ContainerAddrV6)
	}
	return addrs
}

// Validate reports every problem with o at once, without changing the node.
func (o Options) Validate() error { return o.validate() }

// IPv6Enabled reports whether this network namespace has IPv6: the kernel
// has it (ipv6.disable=1 removes /proc/sys/net/ipv6) and it is not switched
// off for all interfaces.
func IPv6Enabled() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

// maxIfaceName is the longest interface name Linux accepts (IFNAMSIZ - 1).
const maxIfaceName = 15

// validate checks o and fills in the default interface name.
func (o *Options) validate() error {
	var errs []error
	if o.Interface == "" {
		o.Interface = DefaultInterface
	}
	if err := validIfaceName(o.Interface); err != nil {
		errs = append(errs, fmt.Errorf("interface: %w", err))
	}
	seen := map[netip.Prefix]bool{}
	for _, p := range o.Addresses {
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("address %v is not valid", p))
		case p.Bits() != p.Addr().BitLen():
			errs = append(errs, fmt.Errorf("address %v: want a host prefix (/%d), not a range", p, p.Addr().BitLen()))
		case p.Addr().Is4In6() || p.Addr().Zone() != "":
			errs = append(errs, fmt.Errorf("address %v: want a plain IPv4 or IPv6 address", p))
		case seen[p]:
			errs = append(errs, fmt.Errorf("address %v is listed twice", p))
		}
		seen[p] = true
	}
	if o.IMDS != nil {
		if err := o.IMDS.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.ConnCap != nil {
		if err := o.ConnCap.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *IMDSOptions) validate() error {
	var errs []error
	a := o.ListenAddr.Addr()
	switch {
	case !o.ListenAddr.IsValid() || o.ListenAddr.Port() == 0:
		errs = append(errs, fmt.Errorf("IMDS listen address %v: want an IPv4 address and a port", o.ListenAddr))
	case !a.Is4():
		errs = append(errs, fmt.Errorf("IMDS listen address %v: the redirect is IPv4 (169.254.169.254), so the target must be IPv4", o.ListenAddr))
	case a == IMDSAddr.Addr():
		errs = append(errs, fmt.Errorf("IMDS listen address %v: 169.254.169.254 on the node would take the real IMDS away from the node itself; listen on another address (e.g. 169.254.170.23:8169)", o.ListenAddr))
	case a.IsLoopback() || a.IsUnspecified():
		errs = append(errs, fmt.Errorf("IMDS listen address %v: the kernel drops traffic redirected from a pod to a loopback or unspecified address; use one of the node's other addresses", o.ListenAddr))
	}
	if len(o.PodInterfaces) == 0 {
		errs = append(errs, errors.New("IMDS redirect: no pod interface patterns given"))
	}
	for _, p := range o.PodInterfaces {
		if _, err := parsePattern(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// validIfaceName checks what the kernel would refuse, with a clearer message.
func validIfaceName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	case len(name) > maxIfaceName:
		return fmt.Errorf("%q is longer than %d bytes", name, maxIfaceName)
	case strings.ContainsAny(name, "/:\x00") || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r > '~' }):
		return fmt.Errorf("%q contains a character interface names cannot have", name)
	}
	return nil
}

// pattern is a parsed interface-name pattern.
type pattern struct {
	name   string // the name, or the prefix when wildcard
	prefix bool   // trailing "+" or "*"
}

// parsePattern reads "eth0" (exactly that name) or "veth+" / "veth*" (any
// name starting with veth).
func parsePattern(s string) (pattern, error) {
	p := pattern{name: s}
	if strings.HasSuffix(s, "+") || strings.HasSuffix(s, "*") {
		p.name, p.prefix = s[:len(s)-1], true
	}
	if p.prefix && p.name == "" {
		return p, fmt.Errorf("pod interface pattern %q would match every interface, the node's own uplink too", s)
	}
	if err := validIfaceName(p.name); err != nil {
		return p, fmt.Errorf("pod interface pattern %q: %w", s, err)
	}
	if strings.ContainsAny(p.name, "+*") {
		return p, fmt.Errorf("pod interface pattern %q: a wildcard (+ or *) may only end the pattern", s)
	}
	return p, nil
}

// String renders the pattern as nft writes it.
func (p pattern) String() string {
	if p.prefix {
		return p.name + "*"
	}
	return p.name
}
