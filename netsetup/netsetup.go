package netsetup

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Result says what Ensure found and did, for the agent's log.
type Result struct {
	// Interface is the interface's name and Kind its device type ("dummy",
	// or "ifb" on a kernel without the dummy driver).
	Interface, Kind string
	// Created is true when the interface did not exist before.
	Created bool
	// Addresses are the interface's addresses now; Added and Removed what
	// changed to get there.
	Addresses, Added, Removed []netip.Prefix
	// IMDSRules are the redirect's rules in nft syntax (and, prefixed "ip6",
	// the IPv6 refusal's); empty without IMDS.
	IMDSRules []string
	// ConnCapRules are the per-source connection cap's rules in nft syntax
	// (prefixed "ip6" for IPv6); empty without a cap or when it could not
	// be installed.
	ConnCapRules []string
	// ConnCapErr says why the connection cap asked for is not in the
	// kernel (nftables or its connlimit expression unavailable). Ensure
	// does not fail for it: the agent's own per-address cap still holds,
	// at the cost of accepting each refused connection first.
	ConnCapErr error
}

// Ensure makes the node look as o says: the interface up with exactly
// o.Addresses, the IMDS redirect installed (or, without o.IMDS, gone) and
// the per-source connection cap installed (or, without o.ConnCap, gone). A
// cap the kernel cannot take is reported in Result.ConnCapErr, not as an
// error.
// It is idempotent: running it again after a restart or a crash changes
// nothing that is already right and leaves one of everything. It needs
// CAP_NET_ADMIN in the node's network namespace, and acts on the network
// namespace of the calling thread. ctx is checked between steps; netlink
// calls themselves are not cancellable but answer at once.
func Ensure(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("link setup: %w", err)
	}
	var rules, rules6 []rule
	if o.IMDS != nil {
		var err error
		if rules, err = imdsRules(*o.IMDS); err != nil {
			return nil, fmt.Errorf("link setup: %w", err)
		}
		rules6 = imdsV6Rules(*o.IMDS)
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("link setup: netlink: %w", err)
	}
	defer h.Close()

	st, err := ensureLink(h, o.Interface, o.Addresses, IPv6Enabled())
	if err != nil {
		return nil, fmt.Errorf("link setup: %w", err)
	}
	res := &Result{
		Interface: o.Interface, Kind: st.kind, Created: st.created,
		Addresses: o.Addresses, Added: st.added, Removed: st.removed,
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	ipv6 := IPv6Enabled()
	var capRules, cap6 []rule
	if o.ConnCap != nil {
		capRules = renderConnCap(*o.ConnCap, false)
		if ipv6 {
			cap6 = renderConnCap(*o.ConnCap, true)
		}
	}
	err = applyTables(rules, rules6, capRules, cap6, ipv6)
	if err != nil && len(capRules)+len(cap6) > 0 {
		// The cap is a first line in front of the agent's own; a kernel
		// that cannot count connections must not keep the agent (or the
		// IMDS redirect, which has no second line) from starting.
		res.ConnCapErr = fmt.Errorf("the per-source connection cap is not in the kernel, so the agent accepts and resets each connection past its share itself (does the kernel have nf_conntrack and nft_connlimit?): %w", err)
		capRules, cap6 = nil, nil
		err = applyTables(rules, rules6, nil, nil, ipv6)
	}
	if err != nil {
		return res, fmt.Errorf("link setup: %w", err)
	}
	for _, r := range rules {
		res.IMDSRules = append(res.IMDSRules, r.chain+": "+r.text)
	}
	for _, r := range capRules {
		res.ConnCapRules = append(res.ConnCapRules, r.chain+": "+r.text)
	}
	if ipv6 {
		for _, r := range rules6 {
			res.IMDSRules = append(res.IMDSRules, "ip6 "+r.chain+": "+r.text)
		}
		for _, r := range cap6 {
			res.ConnCapRules = append(res.ConnCapRules, "ip6 "+r.chain+": "+r.text)
		}
	}
	return res, nil
}

// renderConnCap is connCapRules; a test replaces it with rules the kernel
// refuses, to see Ensure go on without the cap.
var renderConnCap = connCapRules

// applyTables installs podcreds' tables with the rules given or, with none
// at all, removes tables an earlier run left: a redirect left by a run that
// had IMDS on would now send pods' metadata requests to a port nobody
// serves. A kernel without nftables cannot have one, and must not stop an
// agent that asks for nothing from it.
func applyTables(rules, rules6, capRules, cap6 []rule, ipv6 bool) error {
	if len(rules)+len(rules6)+len(capRules)+len(cap6) > 0 {
		return installTables(rules, rules6, capRules, cap6, ipv6)
	}
	if installed, err := imdsInstalled(); err == nil && installed {
		return removeIMDS()
	}
	return nil
}

// Uninstalled says what Uninstall removed.
type Uninstalled struct {
	// Tables is true when podcreds' nftables tables (ip, ip6: the IMDS
	// redirect and the connection cap) were there.
	Tables bool
	// Interface is the interface removed, or empty when there was none.
	Interface string
}

// Uninstall gives the node back what Ensure took: it deletes podcreds'
// nftables tables (the IMDS redirect, the IPv6 IMDS refusal and the
// per-source connection cap) and the
// interface carrying the agent's addresses. The agent never does this itself: the redirect must outlive it,
// or pods would reach the node's real IMDS whenever it restarts or crashes.
// Only an operator's uninstall step (podcreds uninstall-node) calls it, once
// the agent is gone for good. An interface of that name that Ensure would
// not have made (neither dummy nor ifb) is someone else's and is left alone,
// with an error. It is idempotent: with nothing installed it does nothing.
func Uninstall(ctx context.Context, iface string) (*Uninstalled, error) {
	if iface == "" {
		iface = DefaultInterface
	}
	if err := validIfaceName(iface); err != nil {
		return nil, fmt.Errorf("uninstall: interface: %w", err)
	}
	res := &Uninstalled{}
	installed, err := imdsInstalled()
	if err != nil {
		return res, fmt.Errorf("uninstall: nftables: %w", err)
	}
	if installed {
		if err := removeIMDS(); err != nil {
			return res, fmt.Errorf("uninstall: %w", err)
		}
		res.Tables = true
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	removed, err := removeLink(iface)
	if err != nil {
		return res, fmt.Errorf("uninstall: %w", err)
	}
	if removed {
		res.Interface = iface
	}
	return res, nil
}
