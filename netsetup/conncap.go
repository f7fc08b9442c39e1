package netsetup

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The per-source connection cap's objects, in each family's table.
const (
	// ConnCapChain is the filter chain on the input hook that refuses a
	// source's connection beyond the cap.
	ConnCapChain = "conncap"
	// ConnCapSet is the dynamic set of source addresses; each element
	// counts its source's tracked connections to the agent.
	ConnCapSet = "conncap_sources"
)

// TCP header flag bits (byte 13 of the header).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// connCapSetSize bounds the sources tracked at once. A source whose element
// does not fit is not capped (the dynamic set refuses to grow and the rule
// does not match), and the agent's own per-address cap still holds it; a
// node has far fewer pods.
const connCapSetSize = 65535

// ConnCap is the per-source connection cap installed in the kernel: a new
// TCP connection (a SYN) to one of Listeners from a source address that
// already has Max tracked connections to them is refused with a TCP reset
// before the agent sees it. The count is conntrack's (connections that
// have closed, TIME_WAIT included, no longer count) and is one per source
// address over all of Listeners together.
type ConnCap struct {
	// Max is the number of connections one source address may hold: the
	// agent's --max-connections-per-address.
	Max int
	// Listeners are every address and port pods reach the agent on. The
	// input hook sees a connection after the IMDS redirect's DNAT, so the
	// IMDS listener (not 169.254.169.254:80) is the one to list; its
	// source is still the pod's. An unspecified address (0.0.0.0, ::)
	// stands for every address of its family, and :: for IPv4 as well
	// (Go listens dual-stack there).
	Listeners []netip.AddrPort
}

func (c *ConnCap) validate() error {
	var errs []error
	if c.Max < 1 || c.Max > 1<<16 {
		errs = append(errs, fmt.Errorf("connection cap %d: want 1 to %d connections per source address", c.Max, 1<<16))
	}
	if len(c.Listeners) == 0 {
		errs = append(errs, errors.New("connection cap: no listen addresses given"))
	}
	for _, l := range c.Listeners {
		if !l.IsValid() || l.Port() == 0 || l.Addr().Zone() != "" || l.Addr().Is4In6() {
			errs = append(errs, fmt.Errorf("connection cap: listen address %v: want a plain IPv4 or IPv6 address and a port", l))
		}
	}
	return errors.Join(errs...)
}

// connCapRules renders the cap's rules for one family (IPv4 or IPv6): per
// listener one rule that adds a new connection's source to the set, with
// conntrack's count of that source's connections, and rejects it when the
// count is over Max. Listeners of the other family are left out.
func connCapRules(c ConnCap, v6 bool) []rule {
	var rules []rule
	seen := map[netip.AddrPort]bool{}
	for _, l := range c.Listeners {
		a := l.Addr()
		switch {
		case a.IsUnspecified() && a.Is6():
			// Dual-stack: covers both families.
			a = netip.IPv6Unspecified()
			if !v6 {
				a = netip.IPv4Unspecified()
			}
		case a.Is6() != v6:
			continue
		}
		ap := netip.AddrPortFrom(a, l.Port())
		if seen[ap] {
			continue
		}
		seen[ap] = true
		rules = append(rules, connCapRule(ap, c.Max))
	}
	return rules
}

// connCapRule is, in nft's words,
//
//	ip daddr A tcp dport P tcp flags syn / fin,syn,rst,ack add @conncap_sources { ip saddr ct count over N } reject with tcp reset
//
// (ip6 for IPv6, and no daddr match for an unspecified address). Only a
// connection's first packet is matched: a SYN, not a SYN-ACK or a stray
// packet of a connection conntrack picked up mid-stream.
func connCapRule(l netip.AddrPort, max int) rule {
	fam, daddrOff, saddrOff := "ip", uint32(16), uint32(12)
	if l.Addr().Is6() {
		fam, daddrOff, saddrOff = "ip6", 24, 8
	}
	addr := l.Addr().AsSlice()
	var exprs []expr.Any
	text := ""
	if !l.Addr().IsUnspecified() {
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff, Len: uint32(len(addr))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		)
		text = fmt.Sprintf("%s daddr %s ", fam, l.Addr())
	}
	exprs = append(exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(l.Port())},
		// tcp flags (byte 13): only SYN among FIN, SYN, RST and ACK
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFIN | tcpSYN | tcpRST | tcpACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
		// the source address is the set's key; its element counts the
		// source's connections, this one included
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff, Len: uint32(len(addr))},
		&expr.Dynset{
			SrcRegKey: 1, SetName: ConnCapSet, Operation: uint32(unix.NFT_DYNSET_OP_ADD),
			// "over": the rule goes on only while the count exceeds Max
			Exprs: []expr.Any{&expr.Connlimit{Count: uint32(max), Flags: expr.NFT_CONNLIMIT_F_INV}},
		},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	)
	text += fmt.Sprintf("tcp dport %d tcp flags syn / fin,syn,rst,ack add @%s { %s saddr ct count over %d } reject with tcp reset",
		l.Port(), ConnCapSet, fam, max)
	return rule{chain: ConnCapChain, text: text, exprs: exprs}
}

// addConnCap adds the cap's set, chain and rules to t (a table added in the
// same transaction on c). The chain is a filter chain on the input hook: it
// sees connections after the prerouting DNAT, with their original source.
func addConnCap(c *nftables.Conn, t *nftables.Table, rules []rule) error {
	keyType := nftables.TypeIPAddr
	if t.Family == nftables.TableFamilyIPv6 {
		keyType = nftables.TypeIP6Addr
	}
	set := &nftables.Set{Table: t, Name: ConnCapSet, KeyType: keyType, Dynamic: true, Size: connCapSetSize}
	if err := c.AddSet(set, nil); err != nil {
		return fmt.Errorf("nftables set %s: %w", ConnCapSet, err)
	}
	chain := c.AddChain(&nftables.Chain{
		Name: ConnCapChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
	})
	for _, r := range rules {
		exprs := make([]expr.Any, len(r.exprs))
		copy(exprs, r.exprs)
		for i, e := range exprs {
			if d, ok := e.(*expr.Dynset); ok {
				d2 := *d
				d2.SetID = set.ID
				exprs[i] = &d2
			}
		}
		c.AddRule(&nftables.Rule{
			Table: t, Chain: chain, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, "podcreds: one source's connections to the agent are capped"),
		})
	}
	return nil
}

// ConnCapTable is a connection cap installed in tables of its own, for
// measuring the cap apart from the rest of Ensure (bench/hotpath).
type ConnCapTable struct {
	name   string
	tables []*nftables.Table
	// Rules are the installed rules in nft syntax.
	Rules []string
}

// InstallConnCap installs c alone in nftables tables named name (ip, and
// ip6 when a listener is IPv6 and the namespace has IPv6), replacing tables
// of that name in one transaction. Remove deletes them. name must not be
// TableName: podcreds' own tables are Ensure's.
func InstallConnCap(name string, c ConnCap) (*ConnCapTable, error) {
	if name == "" || name == TableName {
		return nil, fmt.Errorf("connection cap: table name %q: want a table of the caller's own, not %q", name, TableName)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	ct := &ConnCapTable{name: name}
	for _, v6 := range []bool{false, true} {
		rules := connCapRules(c, v6)
		fam, prefix := nftables.TableFamilyIPv4, ""
		if v6 {
			if !IPv6Enabled() {
				continue
			}
			fam, prefix = nftables.TableFamilyIPv6, "ip6 "
		}
		t := &nftables.Table{Name: name, Family: fam}
		conn.AddTable(t)
		conn.DelTable(t)
		if len(rules) == 0 {
			continue
		}
		conn.AddTable(t)
		if err := addConnCap(conn, t, rules); err != nil {
			return nil, err
		}
		ct.tables = append(ct.tables, t)
		for _, r := range rules {
			ct.Rules = append(ct.Rules, prefix+r.chain+": "+r.text)
		}
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("install the connection cap (nftables tables %s): %w", name, err)
	}
	return ct, nil
}

// Remove deletes the cap's tables. It is safe to call more than once.
func (ct *ConnCapTable) Remove() error {
	if len(ct.tables) == 0 {
		return nil
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, t := range ct.tables {
		conn.AddTable(t) // makes the delete succeed if someone removed it
		conn.DelTable(t)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("remove the connection cap (nftables tables %s): %w", ct.name, err)
	}
	ct.tables = nil
	return nil
}
