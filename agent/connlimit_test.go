package agent

import (
	"errors"
	"io"
	"net"
	"net/http"
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
	if got := l.openBy(hoarder); got != 2 {
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
	if got := l.openBy(hoarder); got != 1 {
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

// acceptOne listens through a connListener, dials it from 127.0.0.2 and
// returns both ends.
func acceptOne(t *testing.T) (server *limitedConn, client net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnListener(inner, 8, 8, nil)
	t.Cleanup(func() { l.Close() })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	client, err = d.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*limitedConn), client
}

// readErr reads from c in the background and reports when and how the read
// ended.
func readErr(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

// TestDeadlinesEndBlockedReadsAndWrites: a deadline kept for the reaper ends
// a blocked Read or Write with a timeout once it has passed, no earlier and
// at most reapInterval (plus scheduling) later; without the reaper nothing
// would end them.
func TestDeadlinesEndBlockedReadsAndWrites(t *testing.T) {
	const after = 3 * reapInterval // far enough to be kept for the reaper
	t.Run("read", func(t *testing.T) {
		c, _ := acceptOne(t)
		start := time.Now()
		if err := c.SetReadDeadline(start.Add(after)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-readErr(c):
			if took := time.Since(start); !isTimeout(err) || took < after {
				t.Fatalf("read ended after %s with %v, want a timeout after %s", took, err, after)
			}
		case <-time.After(after + reapInterval + 2*time.Second):
			t.Fatal("a read past its deadline was still blocked")
		}
	})
	t.Run("write", func(t *testing.T) {
		c, _ := acceptOne(t) // the client never reads: the write blocks once the buffers are full
		start := time.Now()
		if err := c.SetWriteDeadline(start.Add(after)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 1<<20)
			for {
				if _, err := c.Write(buf); err != nil {
					done <- err
					return
				}
			}
		}()
		select {
		case err := <-done:
			if took := time.Since(start); !isTimeout(err) || took < after {
				t.Fatalf("write ended after %s with %v, want a timeout after %s", took, err, after)
			}
		case <-time.After(after + reapInterval + 2*time.Second):
			t.Fatal("a write past its deadline was still blocked")
		}
	})
}

// TestDeadlinesInThePastAndClearedActAtOnce: net/http interrupts a read by
// setting a deadline in the past and then clears it; both must reach the
// socket at once, and a new deadline replaces one the reaper applied.
func TestDeadlinesInThePastAndClearedActAtOnce(t *testing.T) {
	c, client := acceptOne(t)
	done := readErr(c)
	time.Sleep(20 * time.Millisecond) // let the read block
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("read ended with %v, want a timeout", err)
		}
	case <-time.After(reapInterval / 2):
		t.Fatal("a deadline in the past did not interrupt the read at once")
	}
	for _, next := range []time.Time{{}, time.Now().Add(time.Hour)} {
		if err := c.SetReadDeadline(next); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := <-readErr(c); err != nil {
			t.Fatalf("after a deadline of %v, read failed: %v", next, err)
		}
	}

	// Expired by the reaper, then given a new deadline: reads work again,
	// as on a socket whose deadline is moved.
	if err := c.SetReadDeadline(time.Now().Add(3 * reapInterval)); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	kept := c.read.Load() != 0 && !c.socketRead
	c.mu.Unlock()
	if !kept {
		t.Fatal("a deadline three intervals away went to the socket, not to the reaper")
	}
	if err := <-readErr(c); !isTimeout(err) {
		t.Fatalf("read after the reaper applied the deadline: %v, want a timeout", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr(c); err != nil {
		t.Fatalf("read after a new deadline replaced the expired one: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestStalledRequestsAreCut: on the agent's own listener (serve), a client
// that sends half a request line and stalls is cut once ReadHeaderTimeout
// (5 s) has passed, through the deadlines the reaper applies, and one that
// sends nothing after an answer is cut after IdleTimeout.
func TestStalledRequestsAreCut(t *testing.T) {
	t.Parallel()
	addr, _ := newServingAgent(t)
	for _, tc := range []struct {
		name  string
		send  string
		after time.Duration
	}{
		{"half a request", "GET /v1/credentials HTTP/1.1\r\nHost: " + addr + "\r\nX-Slow: ", 5 * time.Second},
		{"idle after an answer", "GET /v1/credentials HTTP/1.1\r\nHost: " + addr + "\r\n\r\n", IdleTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cl := newRawClient(t, addr, benchSources[1], true)
			if err := cl.dial(); err != nil {
				t.Fatal(err)
			}
			defer cl.close()
			start := time.Now()
			if _, err := cl.conn.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			_ = cl.conn.SetReadDeadline(start.Add(tc.after + reapInterval + 3*time.Second))
			_, err := io.Copy(io.Discard, cl.conn) // the answer, if any, then the server's close
			took := time.Since(start)
			if err != nil || took < tc.after {
				t.Fatalf("connection ended after %s with %v, want closed by the server after %s", took, err, tc.after)
			}
		})
	}
}

// TestReaperRunsOnlyWhileConnectionsAreOpen: an idle listener costs no
// wakeups; the next connection starts the reaper again, and its deadlines
// are applied.
func TestReaperRunsOnlyWhileConnectionsAreOpen(t *testing.T) {
	c, client := acceptOne(t)
	reaping := func() bool {
		c.l.mu.Lock()
		defer c.l.mu.Unlock()
		return c.l.reaping
	}
	if !reaping() {
		t.Fatal("no reaper with a connection open")
	}
	c.Close()
	client.Close()
	for deadline := time.Now().Add(5 * time.Second); reaping(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reaper still runs with no connection open")
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	client2, err := d.Dial("tcp", c.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client2.Close()
	next, err := c.l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if !reaping() {
		t.Fatal("a new connection did not start the reaper")
	}
	if err := next.SetReadDeadline(time.Now().Add(3 * reapInterval)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-readErr(next):
		if !isTimeout(err) {
			t.Fatalf("read ended with %v, want a timeout", err)
		}
	case <-time.After(4*reapInterval + 2*time.Second):
		t.Fatal("the restarted reaper did not apply a passed deadline")
	}
}

// A request finds its caller's address on its connection, parsed when the
// listener accepted it, and it is the address RemoteAddr spells: the pod's
// identity must not depend on which of the two the handler reads.
func TestARequestsCallerIsItsConnectionsSource(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan [2]netip.Addr, 1)
	srv := &http.Server{ConnContext: connContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, fromConn := r.Context().Value(connKey{}).(*limitedConn)
		ip, ok := callerIP(r)
		parsed, _ := remoteIP(r.RemoteAddr)
		if !fromConn || !ok {
			t.Errorf("the request's connection was not found (from the connection: %v)", fromConn)
		}
		got <- [2]netip.Addr{ip, parsed}
	})}
	go func() { _ = srv.Serve(newConnListener(raw, 8, 8, nil)) }()
	t.Cleanup(func() { _ = srv.Close() })
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 5 * time.Second}
	res, err := c.Get("http://" + raw.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if ips := <-got; ips[0] != netip.MustParseAddr("127.0.0.9") || ips[0] != ips[1] {
		t.Fatalf("caller %s, RemoteAddr %s; want both 127.0.0.9", ips[0], ips[1])
	}
}
