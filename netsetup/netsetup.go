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
	// IMDSRules are the redirect's rules in nft syntax; empty without IMDS.
	IMDSRules []string
}

// Ensure makes the node look as o says: the interface up with exactly
// o.Addresses, and the IMDS redirect installed (or, without o.IMDS, gone).
// It is idempotent: running it again after a restart or a crash changes
// nothing that is already right and leaves one of everything. It needs
// CAP_NET_ADMIN in the node's network namespace, and acts on the network
// namespace of the calling thread. ctx is checked between steps; netlink
// calls themselves are not cancellable but answer at once.
func Ensure(ctx context.Context, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("link setup: %w", err)
	}
	var rules []rule
	if o.IMDS != nil {
		var err error
		if rules, err = imdsRules(*o.IMDS); err != nil {
			return nil, fmt.Errorf("link setup: %w", err)
		}
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
	if o.IMDS == nil {
		// A redirect left by a run that had IMDS on would now send pods'
		// metadata requests to a port nobody serves. A kernel without
		// nftables cannot have one, and must not stop an agent that does not
		// serve IMDS.
		if installed, err := imdsInstalled(); err == nil && installed {
			if err := removeIMDS(); err != nil {
				return res, fmt.Errorf("link setup: %w", err)
			}
		}
		return res, nil
	}
	if err := installIMDS(rules); err != nil {
		return res, fmt.Errorf("link setup: %w", err)
	}
	for _, r := range rules {
		res.IMDSRules = append(res.IMDSRules, r.chain+": "+r.text)
	}
	return res, nil
}

// Cleanup undoes what must not outlive the agent: it removes the IMDS
// redirect, so pods are not sent to a port nobody serves once the agent is
// uninstalled. The interface and its addresses stay (the package
// documentation says why). It is safe to call when nothing was installed.
func Cleanup(ctx context.Context, o Options) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.IMDS == nil {
		return nil
	}
	if err := removeIMDS(); err != nil {
		return fmt.Errorf("link cleanup: %w", err)
	}
	return nil
}
