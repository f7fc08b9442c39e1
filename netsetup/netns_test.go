package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inThrowawayNetNS runs f on a thread of its own in a new, empty network
// namespace, so the test changes nothing on the machine. The thread is never
// unlocked: when f returns, the goroutine ends and the runtime discards the
// thread, and with it the namespace and everything in it.
//
// f runs outside the test's goroutine, so it reports with t.Errorf and
// returns; it must not call t.Fatal.
func inThrowawayNetNS(t *testing.T, f func()) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root and network namespaces; -short runs only the pure tests")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a throwaway network namespace and needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run it as root, or with -short to leave it out")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare(CLONE_NEWNET): %v", err)
			return
		}
		f()
	}()
	<-done
}

// testOptions is a node as the e2e suite and the DaemonSet set it up.
func testOptions(port uint16) Options {
	imds := netip.AddrPortFrom(ContainerAddr.Addr(), port)
	listeners := []netip.AddrPort{
		netip.AddrPortFrom(ContainerAddr.Addr(), 80), netip.AddrPortFrom(ECSAddr.Addr(), 80), imds,
	}
	if IPv6Enabled() {
		listeners = append(listeners, netip.AddrPortFrom(ContainerAddrV6.Addr(), 80))
	}
	return Options{
		Addresses: DefaultAddresses(),
		IMDS: &IMDSOptions{
			ListenAddr:    imds,
			PodInterfaces: []string{"veth+", "cali+"},
		},
		ConnCap: &ConnCap{Max: 32, Listeners: listeners},
	}
}

func TestEnsureIsIdempotentInAThrowawayNamespace(t *testing.T) {
	inThrowawayNetNS(t, func() {
		ctx := context.Background()
		o := testOptions(8169)

		first, err := Ensure(ctx, o)
		if err != nil {
			t.Errorf("first Ensure: %v", err)
			return
		}
		if !first.Created || !slices.Contains(linkKinds, first.Kind) {
			t.Errorf("first Ensure: created %v, kind %q; want a new dummy or ifb", first.Created, first.Kind)
		}
		t.Logf("interface kind on this kernel: %s", first.Kind)
		checkNode(t, "after the first Ensure", o)

		// A crash leaves everything in place; a restart runs Ensure again.
		second, err := Ensure(ctx, o)
		if err != nil {
			t.Errorf("second Ensure: %v", err)
			return
		}
		if second.Created || len(second.Added) > 0 || len(second.Removed) > 0 {
			t.Errorf("second Ensure changed the link: created %v, added %v, removed %v", second.Created, second.Added, second.Removed)
		}
		checkNode(t, "after the second Ensure", o)
	})
}

func TestEnsureRemovesStaleState(t *testing.T) {
	inThrowawayNetNS(t, func() {
		ctx := context.Background()
		if _, err := Ensure(ctx, testOptions(8169)); err != nil {
			t.Errorf("Ensure: %v", err)
			return
		}
		// Leftovers of an older configuration: an address nobody listens on
		// any more, a second DNAT rule, and a different IMDS port now.
		stale := netip.MustParsePrefix("169.254.170.99/32")
		if err := run("ip", "addr", "add", stale.String(), "dev", DefaultInterface); err != nil {
			t.Errorf("%v", err)
			return
		}
		if err := run("nft", "add", "rule", "ip", TableName, IMDSChain, "ip", "daddr", "169.254.169.254", "tcp", "dport", "80", "dnat", "to", "169.254.170.2:9999"); err != nil {
			t.Errorf("%v", err)
			return
		}
		o := testOptions(8170)
		res, err := Ensure(ctx, o)
		if err != nil {
			t.Errorf("Ensure over stale state: %v", err)
			return
		}
		if !slices.Contains(res.Removed, stale) {
			t.Errorf("Ensure removed %v, want %v among them", res.Removed, stale)
		}
		checkNode(t, "after Ensure over stale state", o)
	})
}

func TestUninstallRemovesEverythingEnsureMade(t *testing.T) {
	inThrowawayNetNS(t, func() {
		ctx := context.Background()
		before, err := nodeState()
		if err != nil {
			t.Errorf("%v", err)
			return
		}
		o := testOptions(8169)
		if _, err := Ensure(ctx, o); err != nil {
			t.Errorf("Ensure: %v", err)
			return
		}
		res, err := Uninstall(ctx, "")
		if err != nil || !res.Tables || res.Interface != DefaultInterface {
			t.Errorf("Uninstall = %+v, %v; want the redirect and %s removed", res, err, DefaultInterface)
			return
		}
		if res, err := Uninstall(ctx, ""); err != nil || res.Tables || res.Interface != "" {
			t.Errorf("second Uninstall = %+v, %v; want nothing to do", res, err)
		}
		if after, err := nodeState(); err != nil || after != before {
			t.Errorf("after Uninstall the namespace is\n%s\nwant it as before Ensure:\n%s (%v)", after, before, err)
		}

		// An agent without IMDS removes a redirect an earlier run left.
		if _, err := Ensure(ctx, o); err != nil {
			t.Errorf("Ensure: %v", err)
			return
		}
		noIMDS := o
		noIMDS.IMDS = nil
		if _, err := Ensure(ctx, noIMDS); err != nil {
			t.Errorf("Ensure without IMDS: %v", err)
			return
		}
		checkNode(t, "after Ensure without IMDS", noIMDS)

		// An interface of that name that podcreds would not make is not ours.
		if _, err := Uninstall(ctx, ""); err != nil {
			t.Errorf("Uninstall: %v", err)
			return
		}
		if err := run("ip", "link", "add", DefaultInterface, "type", "bridge"); err != nil {
			t.Errorf("%v", err)
			return
		}
		if _, err := Uninstall(ctx, ""); err == nil {
			t.Errorf("Uninstall deleted a bridge named %s, which podcreds never makes", DefaultInterface)
		}
		if _, err := netlink.LinkByName(DefaultInterface); err != nil {
			t.Errorf("the bridge %s is gone: %v", DefaultInterface, err)
		}
	})
}

// nodeState is what an uninstall must restore, read with iproute2 and nft:
// the interfaces with their kinds and addresses, and the nftables ruleset.
func nodeState() (string, error) {
	links, err := exec.Command("ip", "-br", "-d", "addr", "show").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip addr: %v: %s", err, links)
	}
	rules, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list ruleset: %v: %s", err, rules)
	}
	return string(links) + string(rules), nil
}

func TestEnsureOnANodeWithoutIPv6(t *testing.T) {
	inThrowawayNetNS(t, func() {
		// Written from this thread, the sysctl is the throwaway namespace's.
		for _, f := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0o644); err != nil {
				t.Errorf("switch IPv6 off: %v", err)
				return
			}
		}
		if IPv6Enabled() {
			t.Errorf("IPv6Enabled() = true after disable_ipv6=1")
			return
		}
		o := testOptions(8169)
		if slices.Contains(o.Addresses, ContainerAddrV6) {
			t.Errorf("DefaultAddresses() = %v with IPv6 off", o.Addresses)
		}
		for range 2 {
			if _, err := Ensure(context.Background(), o); err != nil {
				t.Errorf("Ensure without IPv6: %v", err)
				return
			}
		}
		checkNode(t, "without IPv6", o)
	})
}

func TestEnsureRefusesAnInterfaceItDidNotMake(t *testing.T) {
	inThrowawayNetNS(t, func() {
		if err := run("ip", "link", "add", "podcreds9", "type", "veth", "peer", "name", "other9"); err != nil {
			t.Errorf("%v", err)
			return
		}
		o := testOptions(8169)
		o.Interface = "podcreds9"
		_, err := Ensure(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "is a veth device") {
			t.Errorf("Ensure on someone else's veth = %v, want a refusal naming the veth", err)
		}
	})
}

// checkNode asserts the namespace holds exactly what o describes, read back
// through netlink and, independently of this package, through `nft`.
func checkNode(t *testing.T, when string, o Options) {
	t.Helper()
	if o.Interface == "" {
		o.Interface = DefaultInterface
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Errorf("%s: list links: %v", when, err)
		return
	}
	var ours []netlink.Link
	for _, l := range links {
		if slices.Contains(linkKinds, l.Type()) {
			ours = append(ours, l)
		}
	}
	if len(ours) != 1 || ours[0].Attrs().Name != o.Interface {
		t.Errorf("%s: %d dummy/ifb interfaces %v, want exactly %s", when, len(ours), names(ours), o.Interface)
		return
	}
	link := ours[0]
	if link.Attrs().Flags&unix.IFF_UP == 0 {
		t.Errorf("%s: %s is down", when, o.Interface)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Errorf("%s: list addresses: %v", when, err)
		return
	}
	var got []netip.Prefix
	for _, a := range addrs {
		p, _ := prefixOf(a.IPNet)
		got = append(got, p)
	}
	if !sameSet(got, o.Addresses) {
		t.Errorf("%s: %s has %v, want exactly %v", when, o.Interface, got, o.Addresses)
	}

	c, err := nftables.New()
	if err != nil {
		t.Errorf("%s: nftables: %v", when, err)
		return
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Errorf("%s: list tables: %v", when, err)
		return
	}
	tables6, err := c.ListTablesOfFamily(nftables.TableFamilyIPv6)
	if err != nil {
		t.Errorf("%s: list ip6 tables: %v", when, err)
		return
	}
	cap4, cap6 := 0, 0
	if o.ConnCap != nil {
		cap4, cap6 = len(connCapRules(*o.ConnCap, false)), len(connCapRules(*o.ConnCap, true))
	}
	ipv6 := IPv6Enabled()
	wantIP, wantIP6 := o.IMDS != nil || cap4 > 0, ipv6 && (o.IMDS != nil || cap6 > 0)
	if got := len(tables) == 1 && tables[0].Name == TableName; got != wantIP || len(tables) > 1 {
		t.Errorf("%s: ip tables %v, want ip %s: %v", when, tables, TableName, wantIP)
		return
	}
	if got := len(tables6) == 1 && tables6[0].Name == TableName; got != wantIP6 || len(tables6) > 1 {
		t.Errorf("%s: ip6 tables %v, want ip6 %s: %v (IPv6 on: %v)", when, tables6, TableName, wantIP6, ipv6)
		return
	}
	if wantIP6 {
		listing6 := nftList(t, when, "ip6")
		if o.IMDS != nil {
			checkIPv6Refusal(t, when, o, listing6)
		}
		checkConnCap(t, when, o.ConnCap, true, listing6)
	}
	if !wantIP {
		return
	}
	// What nft, not this package, says is installed.
	listing := nftList(t, when, "ip")
	checkConnCap(t, when, o.ConnCap, false, listing)
	if o.IMDS == nil {
		if strings.Contains(listing, "dnat") || strings.Contains(listing, "prerouting") {
			t.Errorf("%s: an IMDS redirect without IMDS:\n%s", when, listing)
		}
		return
	}
	want := []string{
		"type nat hook prerouting priority dstnat - 10; policy accept;",
	}
	for _, p := range o.IMDS.PodInterfaces {
		pat, _ := parsePattern(p)
		want = append(want, fmt.Sprintf(`iifname "%s" jump imds`, pat))
	}
	want = append(want, fmt.Sprintf("ip daddr 169.254.169.254 tcp dport 80 dnat to %s", o.IMDS.ListenAddr))
	for _, w := range want {
		if n := strings.Count(listing, w); n != 1 {
			t.Errorf("%s: %q appears %d times in the ruleset, want once:\n%s", when, w, n, listing)
		}
	}
	if n := strings.Count(listing, "dnat to"); n != 1 {
		t.Errorf("%s: %d DNAT rules, want 1:\n%s", when, n, listing)
	}
	if n := strings.Count(listing, "jump imds"); n != len(o.IMDS.PodInterfaces) {
		t.Errorf("%s: %d jumps, want %d:\n%s", when, n, len(o.IMDS.PodInterfaces), listing)
	}
}

// nftList is `nft list table <family> podcreds`, or "" after reporting why not.
func nftList(t *testing.T, when, family string) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", family, TableName).CombinedOutput()
	if err != nil {
		t.Errorf("%s: nft list table %s: %v\n%s (make e2e-deps installs nftables)", when, family, err, out)
	}
	return string(out)
}

// checkConnCap asserts, with nft, that a table listing holds the cap's set,
// its input chain and one rule per listener of the family, each once; or,
// without a cap, none of it.
func checkConnCap(t *testing.T, when string, c *ConnCap, v6 bool, listing string) {
	t.Helper()
	if c == nil {
		if strings.Contains(listing, ConnCapSet) || strings.Contains(listing, "ct count") {
			t.Errorf("%s: a connection cap without one asked for:\n%s", when, listing)
		}
		return
	}
	rules := connCapRules(*c, v6)
	want := []string{
		"set " + ConnCapSet + " {",
		"chain " + ConnCapChain + " {",
		"type filter hook input priority filter; policy accept;",
	}
	for _, r := range rules {
		want = append(want, r.text)
	}
	for _, w := range want {
		if n := strings.Count(listing, w); n != 1 {
			t.Errorf("%s: %q appears %d times in the table, want once:\n%s", when, w, n, listing)
		}
	}
	if n := strings.Count(listing, "ct count over"); n != len(rules) {
		t.Errorf("%s: %d cap rules, want %d:\n%s", when, n, len(rules), listing)
	}
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("%s is not installed (make e2e-deps installs iproute2 and nftables): %w", name, err)
		}
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func names(links []netlink.Link) []string {
	var s []string
	for _, l := range links {
		s = append(s, l.Attrs().Name+" ("+l.Type()+")")
	}
	return s
}

func sameSet(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			return false
		}
	}
	return true
}

// checkIPv6Refusal asserts, with nft's listing of table ip6 podcreds, that
// it drops pods' packets to fd00:ec2::254 with one rule and a jump per
// pattern.
func checkIPv6Refusal(t *testing.T, when string, o Options, listing string) {
	t.Helper()
	want := []string{"type filter hook prerouting priority", "ip6 daddr fd00:ec2::254 drop"}
	for _, p := range o.IMDS.PodInterfaces {
		pat, _ := parsePattern(p)
		want = append(want, fmt.Sprintf(`iifname "%s" jump %s`, pat, IMDSv6Chain))
	}
	for _, w := range want {
		if n := strings.Count(listing, w); n != 1 {
			t.Errorf("%s: %q appears %d times in table ip6 %s, want once:\n%s", when, w, n, TableName, listing)
		}
	}
}

func TestEnableRequestMigrationInAThrowawayNamespace(t *testing.T) {
	inThrowawayNetNS(t, func() {
		if err := os.WriteFile(migrateReqSysctl, []byte("0"), 0o644); err != nil {
			t.Errorf("reset tcp_migrate_req: %v", err)
			return
		}
		changed, err := EnableRequestMigration()
		if err != nil || !changed {
			t.Errorf("first EnableRequestMigration: changed %v, %v; want a change", changed, err)
			return
		}
		if b, err := os.ReadFile(migrateReqSysctl); err != nil || strings.TrimSpace(string(b)) != "1" {
			t.Errorf("tcp_migrate_req is %q (%v) after EnableRequestMigration, want 1", b, err)
		}
		if changed, err := EnableRequestMigration(); err != nil || changed {
			t.Errorf("second EnableRequestMigration: changed %v, %v; want nothing to do", changed, err)
		}
	})
}
