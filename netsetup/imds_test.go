package netsetup

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables/expr"
)

func TestIMDSRulesRender(t *testing.T) {
	rules, err := imdsRules(IMDSOptions{
		ListenAddr:    netip.MustParseAddrPort("169.254.170.23:8169"),
		PodInterfaces: []string{"veth+", "cali*", "eth1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, r.chain+": "+r.text)
	}
	want := []string{
		`prerouting: iifname "veth*" jump imds`,
		`prerouting: iifname "cali*" jump imds`,
		`prerouting: iifname "eth1" jump imds`,
		`imds: ip daddr 169.254.169.254 tcp dport 80 dnat to 169.254.170.23:8169`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rules:\n%q\nwant:\n%q", got, want)
	}
}

// The expressions must be what nft itself compiles the text to
// (`nft --debug=netlink add rule ...`), so that `nft list` shows our rules
// as the text above.
func TestIMDSRuleExpressionsMatchNft(t *testing.T) {
	rules, err := imdsRules(IMDSOptions{
		ListenAddr:    netip.MustParseAddrPort("169.254.170.23:8169"),
		PodInterfaces: []string{"veth+", "eth0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmpData := func(r rule, i int) []byte { return r.exprs[i].(*expr.Cmp).Data }

	t.Run("a prefix compares only its bytes", func(t *testing.T) {
		// [ cmp eq reg 1 0x68746576 ]
		if got := cmpData(rules[0], 1); !bytes.Equal(got, []byte("veth")) {
			t.Fatalf("prefix data = %q, want %q", got, "veth")
		}
		if v := rules[0].exprs[2].(*expr.Verdict); v.Kind != expr.VerdictJump || v.Chain != IMDSChain {
			t.Fatalf("verdict = %+v, want jump %s", v, IMDSChain)
		}
	})
	t.Run("an exact name compares all 16 bytes with NUL padding", func(t *testing.T) {
		// [ cmp eq reg 1 0x30687465 0x00000000 0x00000000 0x00000000 ]
		want := append([]byte("eth0"), make([]byte, 12)...)
		if got := cmpData(rules[1], 1); !bytes.Equal(got, want) {
			t.Fatalf("exact data = %x, want %x", got, want)
		}
	})
	t.Run("the DNAT rule matches 169.254.169.254 tcp 80 and rewrites to the agent", func(t *testing.T) {
		dnat := rules[2]
		if dnat.chain != IMDSChain || len(dnat.exprs) != 9 {
			t.Fatalf("DNAT rule in %s with %d expressions, want imds with 9", dnat.chain, len(dnat.exprs))
		}
		checks := []struct {
			name string
			got  []byte
			want []byte
		}{
			{"daddr", cmpData(dnat, 1), []byte{169, 254, 169, 254}},
			{"l4proto", cmpData(dnat, 3), []byte{6}},
			{"dport", cmpData(dnat, 5), []byte{0, 80}},
			{"target address", dnat.exprs[6].(*expr.Immediate).Data, []byte{169, 254, 170, 23}},
			{"target port", dnat.exprs[7].(*expr.Immediate).Data, []byte{0x1f, 0xe9}},
		}
		for _, c := range checks {
			if !bytes.Equal(c.got, c.want) {
				t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
			}
		}
		if p := dnat.exprs[0].(*expr.Payload); p.Base != expr.PayloadBaseNetworkHeader || p.Offset != 16 || p.Len != 4 {
			t.Errorf("daddr payload = %+v, want network header @16, 4 bytes", p)
		}
		if p := dnat.exprs[4].(*expr.Payload); p.Base != expr.PayloadBaseTransportHeader || p.Offset != 2 || p.Len != 2 {
			t.Errorf("dport payload = %+v, want transport header @2, 2 bytes", p)
		}
		if n := dnat.exprs[8].(*expr.NAT); n.Type != expr.NATTypeDestNAT || !n.Specified || n.RegAddrMin != 1 || n.RegProtoMin != 2 {
			t.Errorf("nat = %+v, want dnat addr reg 1 proto reg 2, proto specified", n)
		}
	})
}

func TestIMDSRulesRefuseInvalidOptions(t *testing.T) {
	_, err := imdsRules(IMDSOptions{ListenAddr: netip.MustParseAddrPort("169.254.169.254:80"), PodInterfaces: []string{"veth+"}})
	if err == nil {
		t.Fatal("imdsRules accepted 169.254.169.254 as the target")
	}
}

func TestIMDSv6RefusalRender(t *testing.T) {
	var got []string
	for _, r := range imdsV6Rules(IMDSOptions{PodInterfaces: []string{"veth+", "eth1"}}) {
		got = append(got, r.chain+": "+r.text)
	}
	want := []string{
		`prerouting: iifname "veth*" jump refuse-imds6`,
		`prerouting: iifname "eth1" jump refuse-imds6`,
		`refuse-imds6: ip6 daddr fd00:ec2::254 drop`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rules:\n%q\nwant:\n%q", got, want)
	}
}
