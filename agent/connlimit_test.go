package agent

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestConnectionsBeyondAnAddressShareAreRefusedAtOnce: an address past its
// share is closed without waiting for a slot; other
// addresses are accepted; a closed connection gives its share back.
func TestConnectionsBeyondAnAddressShareAreRefusedAtOnce(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	l := newConnListener(inner, 8, 2, refused)
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	tryDial := func(src string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	dial := func(src string) net.Conn {
		t.Helper()
		c, err := tryDial(src)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("a connection within its share was not accepted")
			return nil
		}
	}
	hoarder := netip.MustParseAddr("127.0.0.2")
	dial("127.0.0.2")
	first := next()
	dial("127.0.0.2")
	next()

	// The third is reset: on loopback the reset can even beat the dial's
	// return, otherwise the first read sees it.
	if over, err := tryDial("127.0.0.2"); err == nil {
		_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
		var ne net.Error
		if _, err := over.Read(make([]byte, 1)); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("the third connection of one address: read %v, want it closed at once", err)
		}
	}
	if got := l.open(hoarder); got != 2 {
		t.Errorf("the address holds %d connections, want its share of 2", got)
	}
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(refused) != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v connections counted as refused, want 1", testutil.ToFloat64(refused))
		}
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection past the share was handed to the server: %v", c.RemoteAddr())
	default:
	}

	dial("127.0.0.3")
	next()
	first.Close()
	first.Close() // a second Close gives back nothing more
	if got := l.open(hoarder); got != 1 {
		t.Errorf("after one close the address holds %d, want 1", got)
	}
	dial("127.0.0.2")
	next()
	// Three open connections, and the slot the waiting Accept holds.
	for deadline := time.Now().Add(5 * time.Second); len(l.slots) != 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of the total slots taken, want 3 connections and the waiting Accept's", len(l.slots))
		}
	}
}
