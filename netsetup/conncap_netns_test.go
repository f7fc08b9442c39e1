package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// holdingServer accepts every connection on addr and holds it until the
// client closes it, as a hoarding pod's connections are held by the agent.
// It never refuses: a refusal a client sees comes from the kernel.
type holdingServer struct {
	l  net.Listener
	wg sync.WaitGroup
}

func listenHolding(addr netip.AddrPort) (*holdingServer, error) {
	l, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, err
	}
	s := &holdingServer{l: l}
	s.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				var b [1]byte
				_, _ = c.Read(b[:]) // until the client closes
			})
		}
	})
	return s, nil
}

func (s *holdingServer) Close() { s.l.Close() }

// dialFrom connects from src to dst, as a pod at src would.
func dialFrom(src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
	return d.Dial("tcp", dst.String())
}

// upLoopback brings lo up (a new namespace has it down) and gives it extra
// addresses to play pods from.
func upLoopback(extra ...netip.Prefix) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	for _, p := range extra {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(lo, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to lo: %w", p, err)
		}
	}
	return nil
}

// The cap lives in the kernel: past a source's share, its next connection
// is reset before any process sees it, while other sources still connect;
// and a closed connection gives its place back.
func TestConnCapRefusesASourcesConnectionPastItsShareInTheKernel(t *testing.T) {
	inThrowawayNetNS(t, func() {
		const max = 4
		v6 := IPv6Enabled()
		type family struct {
			name         string
			agent        netip.AddrPort
			noisy, other netip.Addr
		}
		fams := []family{{"IPv4", netip.AddrPortFrom(ContainerAddr.Addr(), 80), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}}
		extra := []netip.Prefix{}
		if v6 {
			f := family{"IPv6", netip.AddrPortFrom(ContainerAddrV6.Addr(), 80), netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("fd00:1::3")}
			fams = append(fams, f)
			extra = append(extra, netip.PrefixFrom(f.noisy, 128), netip.PrefixFrom(f.other, 128))
		} else {
			t.Logf("IPv6 is off in this kernel: checking IPv4 only")
		}
		if err := upLoopback(extra...); err != nil {
			t.Errorf("%v", err)
			return
		}
		o := Options{Addresses: DefaultAddresses()}
		var listeners []netip.AddrPort
		for _, f := range fams {
			listeners = append(listeners, f.agent)
		}
		// Without the cap the link is up, but nothing refuses: the same
		// dials that are refused below get through. This is what the
		// assertions below see if the rule is missing or does not match.
		if _, err := Ensure(context.Background(), o); err != nil {
			t.Errorf("Ensure: %v", err)
			return
		}
		for _, f := range fams {
			srv, err := listenHolding(f.agent)
			if err != nil {
				t.Errorf("listen %s: %v", f.agent, err)
				return
			}
			conns, err := dialN(f.noisy, f.agent, max+1)
			closeAll(conns)
			if err != nil {
				t.Errorf("%s without the cap: %v; want %d connections from %s accepted", f.name, err, max+1, f.noisy)
			}
			srv.Close()
		}

		o.ConnCap = &ConnCap{Max: max, Listeners: listeners}
		res, err := Ensure(context.Background(), o)
		if err != nil || res.ConnCapErr != nil {
			t.Errorf("Ensure with the cap: %v; cap: %v", err, res.ConnCapErr)
			return
		}
		t.Logf("installed: %q", res.ConnCapRules)
		checkNode(t, "after Ensure with the cap", o)
		for _, f := range fams {
			func() {
				srv, err := listenHolding(f.agent)
				if err != nil {
					t.Errorf("listen %s: %v", f.agent, err)
					return
				}
				defer srv.Close()
				conns, err := dialN(f.noisy, f.agent, max)
				defer func() { closeAll(conns) }()
				if err != nil {
					t.Errorf("%s: %v; want its share of %d accepted", f.name, err, max)
					return
				}
				if c, err := dialFrom(f.noisy, f.agent); !errors.Is(err, syscall.ECONNREFUSED) {
					if c != nil {
						c.Close()
					}
					t.Errorf("%s: connection %d from %s: %v; want it reset by the kernel (connection refused)", f.name, max+1, f.noisy, err)
				}
				other, err := dialN(f.other, f.agent, max)
				closeAll(other)
				if err != nil {
					t.Errorf("%s: another source beside the capped one: %v; want its own share accepted", f.name, err)
				}
				// Closed on both sides, a connection no longer counts
				// (conntrack's TIME_WAIT), and the source connects again.
				conns[0].Close()
				conns = conns[1:]
				var again net.Conn
				for deadline := time.Now().Add(10 * time.Second); ; {
					if again, err = dialFrom(f.noisy, f.agent); err == nil || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err != nil {
					t.Errorf("%s: after closing one of its connections, %s: %v; want a place again", f.name, f.noisy, err)
					return
				}
				conns = append(conns, again)
			}()
		}
	})
}

// dialN opens n connections from src to dst; on a failure it returns those
// opened so far with the error.
func dialN(src netip.Addr, dst netip.AddrPort, n int) ([]net.Conn, error) {
	var conns []net.Conn
	for i := range n {
		c, err := dialFrom(src, dst)
		if err != nil {
			return conns, fmt.Errorf("connection %d from %s to %s: %w", i+1, src, dst, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// A kernel that refuses the cap (here: a connlimit flag it does not know,
// refused as a kernel without nft_connlimit refuses the expression) does not
// fail Ensure: the IMDS redirect and the link are installed, the cap is
// not, and Result.ConnCapErr says why.
func TestEnsureGoesOnWithoutACapTheKernelRefuses(t *testing.T) {
	inThrowawayNetNS(t, func() {
		defer func(f func(ConnCap, bool) []rule) { renderConnCap = f }(renderConnCap)
		renderConnCap = func(c ConnCap, v6 bool) []rule {
			rules := connCapRules(c, v6)
			for i, r := range rules {
				exprs := slices.Clone(r.exprs)
				for j, e := range exprs {
					if d, ok := e.(*expr.Dynset); ok {
						bad := *d
						bad.Exprs = []expr.Any{&expr.Connlimit{Count: 32, Flags: 0x80}} // a flag no kernel knows: EOPNOTSUPP
						exprs[j] = &bad
					}
				}
				rules[i].exprs = exprs
			}
			return rules
		}
		o := testOptions(8169)
		res, err := Ensure(context.Background(), o)
		if err != nil {
			t.Errorf("Ensure with a cap the kernel refuses: %v; want it to go on without the cap", err)
			return
		}
		if res.ConnCapErr == nil || !strings.Contains(res.ConnCapErr.Error(), "nft_connlimit") || len(res.ConnCapRules) != 0 {
			t.Errorf("Result: cap error %v, cap rules %q; want an error saying why, and no rules", res.ConnCapErr, res.ConnCapRules)
		}
		if len(res.IMDSRules) == 0 {
			t.Errorf("Result: no IMDS rules")
		}
		noCap := o
		noCap.ConnCap = nil
		checkNode(t, "after Ensure with a refused cap", noCap)
	})
}
