package netsetup

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The nftables objects podcreds owns. Everything it installs lives in this
// one table, so replacing or removing it never touches anyone else's rules.
const (
	TableName       = "podcreds"
	PreroutingChain = "prerouting"
	IMDSChain       = "imds"
	// IMDSv6Chain, in the table "ip6 podcreds", drops pods' traffic to
	// EC2's IPv6 IMDS address (the agent's IMDS endpoint is IPv4 only).
	IMDSv6Chain = "refuse-imds6"
)

// IMDSAddrV6 is EC2's IPv6 instance metadata address, served where the
// instance's metadata options enable it (HttpProtocolIpv6).
var IMDSAddrV6 = netip.MustParseAddr("fd00:ec2::254")

// chainPriority runs the redirect just before iptables' nat PREROUTING
// (dstnat, -100): the first DNAT of a connection is the one that applies, so
// a broad rule elsewhere cannot take pods' IMDS traffic first.
const chainPriority = -110

// rule is one nftables rule in its two forms: the netlink expressions the
// kernel gets, and the nft text an operator would see in `nft list table`.
type rule struct {
	chain string
	text  string
	exprs []expr.Any
}

// imdsRules renders the redirect: per pod interface pattern one jump from
// the prerouting hook into the imds chain, and in it one DNAT rule.
func imdsRules(o IMDSOptions) ([]rule, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	var rules []rule
	for _, s := range o.PodInterfaces {
		p, _ := parsePattern(s) // validated above
		rules = append(rules, rule{
			chain: PreroutingChain,
			text:  fmt.Sprintf("iifname %q jump %s", p, IMDSChain),
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(p)},
				&expr.Verdict{Kind: expr.VerdictJump, Chain: IMDSChain},
			},
		})
	}
	imds, target := IMDSAddr.Addr().As4(), o.ListenAddr.Addr().As4()
	rules = append(rules, rule{
		chain: IMDSChain,
		text:  fmt.Sprintf("ip daddr %s tcp dport %d dnat to %s", IMDSAddr.Addr(), IMDSAddr.Port(), o.ListenAddr),
		exprs: []expr.Any{
			// ip daddr 169.254.169.254 (IPv4 header bytes 16-19)
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: imds[:]},
			// tcp dport 80
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(IMDSAddr.Port())},
			// dnat to the agent
			&expr.Immediate{Register: 1, Data: target[:]},
			&expr.Immediate{Register: 2, Data: port(o.ListenAddr.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		},
	})
	return rules, nil
}

// imdsV6Rules renders the IPv6 refusal: per pod interface pattern one jump
// from the prerouting hook of table ip6 podcreds, and one rule dropping every
// packet to fd00:ec2::254. Pods get no answer from the node's IPv6 IMDS, with
// or without the agent. (A drop, not a reject: reject is not allowed in
// prerouting, and prerouting is where both the forwarded path to the real
// IMDS and a local one meet.)
func imdsV6Rules(o IMDSOptions) []rule {
	var rules []rule
	for _, s := range o.PodInterfaces {
		p, _ := parsePattern(s) // validated by imdsRules
		rules = append(rules, rule{
			chain: PreroutingChain,
			text:  fmt.Sprintf("iifname %q jump %s", p, IMDSv6Chain),
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameBytes(p)},
				&expr.Verdict{Kind: expr.VerdictJump, Chain: IMDSv6Chain},
			},
		})
	}
	imds := IMDSAddrV6.As16()
	rules = append(rules, rule{
		chain: IMDSv6Chain,
		text:  fmt.Sprintf("ip6 daddr %s drop", IMDSAddrV6),
		exprs: []expr.Any{
			// ip6 daddr fd00:ec2::254 (IPv6 header bytes 24-39)
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: imds[:]},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
	})
	return rules
}

// ifnameBytes is what nft compares the input interface name with: an exact
// name with its NUL padding to IFNAMSIZ (so "eth0" does not match "eth01"),
// a prefix as its bare bytes (the comparison then covers only those).
func ifnameBytes(p pattern) []byte {
	if p.prefix {
		return []byte(p.name)
	}
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, p.name)
	return b
}

// port is a port in network byte order.
func port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

var (
	table  = &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	table6 = &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv6}
)

// installTables replaces podcreds' ip table with one holding the IMDS
// redirect's rules and the connection cap's cap rules, and its ip6 table
// with one holding rules6 and cap6, in a single netlink transaction: the
// kernel applies all of it or none, and at no moment is there no redirect,
// or two. A family with no rules gets no table. ipv6 says whether this
// namespace has IPv6; without it the ip6 family is left alone.
func installTables(rules, rules6, capRules, cap6 []rule, ipv6 bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	families := []family{{table: table, preType: nftables.ChainTypeNAT, chain: IMDSChain,
		comment: "podcreds: pods' IMDS traffic to the agent", rules: rules, cap: capRules}}
	if ipv6 {
		families = append(families, family{table: table6, preType: nftables.ChainTypeFilter, chain: IMDSv6Chain,
			comment: "podcreds: no pod reaches the node's IPv6 IMDS", rules: rules6, cap: cap6})
	}
	for _, f := range families {
		if err := f.add(c); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables tables ip and ip6 %s: %w", TableName, err)
	}
	return nil
}

// family is what one of podcreds' tables (ip or ip6) holds: the IMDS rules,
// jumped to from a prerouting chain of type preType into chain, and the
// connection cap.
type family struct {
	table      *nftables.Table
	preType    nftables.ChainType
	chain      string
	comment    string
	rules, cap []rule
}

// add replaces f's table, in c's transaction, with one holding its rules
// (none: no table).
func (f family) add(c *nftables.Conn) error {
	// Adding the table first makes the delete succeed when there is none.
	c.AddTable(f.table)
	c.DelTable(f.table)
	if len(f.rules) == 0 && len(f.cap) == 0 {
		return nil
	}
	c.AddTable(f.table)
	if len(f.rules) > 0 {
		chains := map[string]*nftables.Chain{
			PreroutingChain: c.AddChain(&nftables.Chain{
				Name: PreroutingChain, Table: f.table, Type: f.preType,
				Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(chainPriority),
			}),
			f.chain: c.AddChain(&nftables.Chain{Name: f.chain, Table: f.table}),
		}
		for _, r := range f.rules {
			c.AddRule(&nftables.Rule{
				Table: f.table, Chain: chains[r.chain], Exprs: r.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, f.comment),
			})
		}
	}
	if len(f.cap) > 0 {
		return addConnCap(c, f.table, f.cap)
	}
	return nil
}

// imdsInstalled reports whether podcreds' ip table, or its ip6 table, exists.
func imdsInstalled() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	tables, err := c.ListTables()
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool {
		return t.Name == TableName && (t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6)
	}), nil
}

// removeIMDS deletes podcreds' ip and ip6 tables where they exist.
func removeIMDS() error {
	installed, err := installedTables()
	if err != nil {
		return err
	}
	if len(installed) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, t := range installed {
		c.DelTable(t)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove nftables tables %s: %w", TableName, err)
	}
	return nil
}

// installedTables lists podcreds' ip and ip6 tables that exist.
func installedTables() ([]*nftables.Table, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	var ours []*nftables.Table
	for _, t := range tables {
		if t.Name == TableName && (t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6) {
			ours = append(ours, t)
		}
	}
	return ours, nil
}
