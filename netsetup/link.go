package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkKinds are the device types Ensure creates, in order of preference, and
// accepts on an existing interface of its name: both only hold addresses.
var linkKinds = []string{"dummy", "ifb"}

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE from linux/if_link.h: no
// automatic IPv6 link-local address.
const addrGenModeNone = 1

// linkState is what ensureLink found and did.
type linkState struct {
	kind           string
	created        bool
	added, removed []netip.Prefix
}

// ensureLink makes name an up dummy (or ifb) interface with exactly addrs.
func ensureLink(h *netlink.Handle, name string, addrs []netip.Prefix, ipv6 bool) (linkState, error) {
	var st linkState
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		if link, err = createLink(h, name); err != nil {
			return st, err
		}
		st.created = true
	case err != nil:
		return st, fmt.Errorf("look up interface %s: %w", name, err)
	case !slices.Contains(linkKinds, link.Type()):
		return st, fmt.Errorf("interface %s exists and is a %s device, not one podcreds made (dummy or ifb): remove it or choose another interface name", name, link.Type())
	}
	st.kind = link.Type()

	// The kernel would give the interface an fe80:: address of its own when
	// it comes up; the interface is to carry exactly addrs. Without IPv6 on
	// the node the kernel may refuse the setting, and has nothing to add.
	if err := h.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil && ipv6 {
		return st, fmt.Errorf("turn off IPv6 link-local addresses on %s: %w", name, err)
	}

	have, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return st, fmt.Errorf("list the addresses of %s: %w", name, err)
	}
	present := map[netip.Prefix]bool{}
	for _, a := range have {
		p, ok := prefixOf(a.IPNet)
		if ok && slices.Contains(addrs, p) {
			present[p] = true
			continue
		}
		// Not ours to keep: a stale address from another configuration, or
		// the kernel's link-local address from before addrgenmode was off.
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return st, fmt.Errorf("remove address %s from %s: %w", a.IPNet, name, err)
		}
		st.removed = append(st.removed, p)
	}
	for _, p := range addrs {
		if present[p] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			// No duplicate address detection: the address would be
			// "tentative" for a second or more and the agent's bind on it
			// would fail. The address is node-local by design.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return st, fmt.Errorf("add address %s to %s: %w", p, name, err)
		}
		st.added = append(st.added, p)
	}
	if err := h.LinkSetUp(link); err != nil {
		return st, fmt.Errorf("set %s up: %w", name, err)
	}
	return st, nil
}

// createLink creates name as the first of linkKinds the kernel has a driver
// for. A kernel without the driver answers EOPNOTSUPP ("Unknown device type"
// in ip's words).
func createLink(h *netlink.Handle, name string) (netlink.Link, error) {
	attrs := netlink.LinkAttrs{Name: name}
	var errs []error
	for _, l := range []netlink.Link{&netlink.Dummy{LinkAttrs: attrs}, &netlink.Ifb{LinkAttrs: attrs}} {
		err := h.LinkAdd(l)
		if err == nil || errors.Is(err, unix.EEXIST) {
			// EEXIST: another process made it between our look-up and now;
			// take what is there if it is of a kind we accept.
			link, err := h.LinkByName(name)
			if err != nil {
				return nil, fmt.Errorf("look up interface %s after creating it: %w", name, err)
			}
			if !slices.Contains(linkKinds, link.Type()) {
				return nil, fmt.Errorf("interface %s appeared as a %s device while podcreds created it", name, link.Type())
			}
			return link, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", l.Type(), err))
		if !errors.Is(err, unix.EOPNOTSUPP) {
			break
		}
	}
	return nil, fmt.Errorf("create interface %s: %w", name, errors.Join(errs...))
}

// prefixOf converts a kernel address to a netip.Prefix.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// removeLink deletes the interface name if it is one Ensure makes (dummy or
// ifb); its addresses go with it. It reports whether there was one.
func removeLink(name string) (bool, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return false, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up interface %s: %w", name, err)
	case !slices.Contains(linkKinds, link.Type()):
		return false, fmt.Errorf("interface %s is a %s device, not one podcreds makes (%v); leaving it alone", name, link.Type(), linkKinds)
	}
	if err := h.LinkDel(link); err != nil {
		return false, fmt.Errorf("delete interface %s: %w", name, err)
	}
	return true, nil
}
