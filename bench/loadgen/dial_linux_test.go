package loadgen

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

func TestDialerDefersPortChoiceToConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := netip.MustParseAddr("127.0.77.9")
	d := &dialer{sources: []netip.Addr{src}, timeout: time.Second, closeReset: true}
	c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != src {
		t.Errorf("dialed from %v, want %v", got, src)
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort)
	}); err != nil || gerr != nil {
		t.Skipf("cannot read IP_BIND_ADDRESS_NO_PORT: %v %v", err, gerr)
	}
	if v != 1 {
		t.Errorf("IP_BIND_ADDRESS_NO_PORT = %d, want 1", v)
	}
}
