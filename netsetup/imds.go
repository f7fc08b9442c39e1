package netsetup

import (
	"encoding/binary"
	"fmt"
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
)

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

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}

// installIMDS replaces podcreds' table with one holding rules, in a single
// netlink transaction: the kernel applies all of it or none, and at no moment
// is there no redirect, or two.
func installIMDS(rules []rule) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	// Adding the table first makes the delete succeed when there is none.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	chains := map[string]*nftables.Chain{
		PreroutingChain: c.AddChain(&nftables.Chain{
			Name: PreroutingChain, Table: table, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(chainPriority),
		}),
		IMDSChain: c.AddChain(&nftables.Chain{Name: IMDSChain, Table: table}),
	}
	for _, r := range rules {
		c.AddRule(&nftables.Rule{
			Table: table, Chain: chains[r.chain], Exprs: r.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, "podcreds: pods' IMDS traffic to the agent"),
		})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables table ip %s: %w", TableName, err)
	}
	return nil
}

// imdsInstalled reports whether podcreds' table exists.
func imdsInstalled() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }), nil
}

// removeIMDS deletes podcreds' table if it exists.
func removeIMDS() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	c.AddTable(table)
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove nftables table ip %s: %w", TableName, err)
	}
	return nil
}
