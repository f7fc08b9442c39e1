package netsetup

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func TestConnCapRulesRender(t *testing.T) {
	c := ConnCap{Max: 32, Listeners: []netip.AddrPort{
		netip.MustParseAddrPort("169.254.170.23:80"),
		netip.MustParseAddrPort("[fd00:ec2::23]:80"),
		netip.MustParseAddrPort("169.254.170.2:80"),
		netip.MustParseAddrPort("169.254.170.23:8169"),
		netip.MustParseAddrPort("169.254.170.23:80"), // twice: one rule
		netip.MustParseAddrPort("[::]:9000"),         // dual-stack: both families
	}}
	render := func(v6 bool) []string {
		var got []string
		for _, r := range connCapRules(c, v6) {
			got = append(got, r.chain+": "+r.text)
		}
		return got
	}
	const tail = " tcp flags syn / fin,syn,rst,ack add @conncap_sources { %s saddr ct count over 32 } reject with tcp reset"
	ip, ip6 := strings.ReplaceAll(tail, "%s", "ip"), strings.ReplaceAll(tail, "%s", "ip6")
	want4 := []string{
		"conncap: ip daddr 169.254.170.23 tcp dport 80" + ip,
		"conncap: ip daddr 169.254.170.2 tcp dport 80" + ip,
		"conncap: ip daddr 169.254.170.23 tcp dport 8169" + ip,
		"conncap: tcp dport 9000" + ip,
	}
	want6 := []string{
		"conncap: ip6 daddr fd00:ec2::23 tcp dport 80" + ip6,
		"conncap: tcp dport 9000" + ip6,
	}
	if got := render(false); !slices.Equal(got, want4) {
		t.Errorf("IPv4 rules:\n%q\nwant:\n%q", got, want4)
	}
	if got := render(true); !slices.Equal(got, want6) {
		t.Errorf("IPv6 rules:\n%q\nwant:\n%q", got, want6)
	}
}

// The expressions are what nft compiles the text to (`nft --debug=netlink`):
//
//	[ payload load 4b @ network header + 16 => reg 1 ]
//	[ cmp eq reg 1 0x17aafea9 ]
//	[ meta load l4proto => reg 1 ]
//	[ cmp eq reg 1 0x00000006 ]
//	[ payload load 2b @ transport header + 2 => reg 1 ]
//	[ cmp eq reg 1 0x00005000 ]
//	[ payload load 1b @ transport header + 13 => reg 1 ]
//	[ bitwise reg 1 = ( reg 1 & 0x00000017 ) ^ 0x00000000 ]
//	[ cmp eq reg 1 0x00000002 ]
//	[ payload load 4b @ network header + 12 => reg 1 ]
//	[ dynset add reg_key 1 set conncap timeout 0ms expr [ connlimit count 32 flags 1 ] ]
//	[ reject type 1 code 0 ]
func TestConnCapRuleExpressionsMatchNft(t *testing.T) {
	for _, tc := range []struct {
		name              string
		listener          string
		daddr             []byte
		daddrOff, saddrOf uint32
	}{
		{"IPv4", "169.254.170.23:80", []byte{169, 254, 170, 23}, 16, 12},
		{"IPv6", "[fd00:ec2::23]:80", netip.MustParseAddr("fd00:ec2::23").AsSlice(), 24, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := netip.MustParseAddrPort(tc.listener)
			r := connCapRule(l, 32)
			if r.chain != ConnCapChain || len(r.exprs) != 12 {
				t.Fatalf("rule in %s with %d expressions, want %s with 12", r.chain, len(r.exprs), ConnCapChain)
			}
			if p := r.exprs[0].(*expr.Payload); p.Base != expr.PayloadBaseNetworkHeader || p.Offset != tc.daddrOff || int(p.Len) != len(tc.daddr) {
				t.Errorf("daddr payload = %+v", p)
			}
			cmp := func(i int) []byte { return r.exprs[i].(*expr.Cmp).Data }
			for _, c := range []struct {
				name      string
				got, want []byte
			}{
				{"daddr", cmp(1), tc.daddr},
				{"l4proto", cmp(3), []byte{unix.IPPROTO_TCP}},
				{"dport", cmp(5), []byte{0, 80}},
				{"flags mask", r.exprs[7].(*expr.Bitwise).Mask, []byte{0x17}},
				{"flags", cmp(8), []byte{0x02}},
			} {
				if !bytes.Equal(c.got, c.want) {
					t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
				}
			}
			if p := r.exprs[6].(*expr.Payload); p.Base != expr.PayloadBaseTransportHeader || p.Offset != 13 || p.Len != 1 {
				t.Errorf("flags payload = %+v, want transport header @13, 1 byte", p)
			}
			if p := r.exprs[9].(*expr.Payload); p.Base != expr.PayloadBaseNetworkHeader || p.Offset != tc.saddrOf || int(p.Len) != len(tc.daddr) {
				t.Errorf("saddr payload = %+v", p)
			}
			d := r.exprs[10].(*expr.Dynset)
			if d.SetName != ConnCapSet || d.Operation != unix.NFT_DYNSET_OP_ADD || d.SrcRegKey != 1 || len(d.Exprs) != 1 {
				t.Fatalf("dynset = %+v, want add reg 1 to %s with one expression", d, ConnCapSet)
			}
			if cl := d.Exprs[0].(*expr.Connlimit); cl.Count != 32 || cl.Flags != expr.NFT_CONNLIMIT_F_INV {
				t.Errorf("connlimit = %+v, want count 32 flags 1 (over)", cl)
			}
			if rj := r.exprs[11].(*expr.Reject); rj.Type != unix.NFT_REJECT_TCP_RST {
				t.Errorf("reject = %+v, want tcp reset", rj)
			}
		})
	}
}

func TestConnCapRefusesInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    ConnCap
		want string
	}{
		{"no connections at all", ConnCap{Max: 0, Listeners: []netip.AddrPort{netip.MustParseAddrPort("169.254.170.23:80")}}, "want 1 to"},
		{"no listeners", ConnCap{Max: 32}, "no listen addresses"},
		{"port 0", ConnCap{Max: 32, Listeners: []netip.AddrPort{netip.MustParseAddrPort("169.254.170.23:0")}}, "want a plain IPv4 or IPv6 address and a port"},
		{"an IPv4-mapped address", ConnCap{Max: 32, Listeners: []netip.AddrPort{netip.MustParseAddrPort("[::ffff:169.254.170.23]:80")}}, "plain IPv4 or IPv6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Addresses: []netip.Prefix{ContainerAddr}, ConnCap: &tc.c}
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := InstallConnCap(TableName, ConnCap{Max: 1, Listeners: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:80")}}); err == nil {
		t.Fatal("InstallConnCap took podcreds' own table, which Ensure replaces")
	}
}
