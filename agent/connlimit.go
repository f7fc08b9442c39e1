package agent

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// connListener caps a listener's connections twice: in total, where the
// excess waits in the kernel's backlog (as golang.org/x/net/netutil's
// LimitListener does), and per source address, where the excess is closed
// at once. Without the second cap one pod that opens the
// total and idles on them leaves every other pod's connection in the
// backlog, past every SDK's timeout; with it, one address can hold at most
// perAddr of the slots, and a connection beyond that is reset at once: it
// costs the hoarder a refusal, not anyone else a wait.
type connListener struct {
	net.Listener
	slots   chan struct{} // one token per open connection, total cap
	done    chan struct{} // closed by Close, unblocking Accept
	closing sync.Once
	perAddr int
	refused prometheus.Counter // may be nil

	mu     sync.Mutex
	byAddr map[netip.Addr]int // open connections per source; absent at 0
}

func newConnListener(l net.Listener, total, perAddr int, refused prometheus.Counter) *connListener {
	return &connListener{
		Listener: l, slots: make(chan struct{}, total), done: make(chan struct{}),
		perAddr: perAddr, refused: refused, byAddr: map[netip.Addr]int{},
	}
}

// Accept returns the next connection whose source is within its share.
func (l *connListener) Accept() (net.Conn, error) {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		ip, ok := connSource(c)
		if !ok {
			return &limitedConn{Conn: c, l: l}, nil // not TCP (never in production): total cap only
		}
		if !l.take(ip) {
			<-l.slots
			if l.refused != nil {
				l.refused.Inc()
			}
			refuseConn(c)
			continue
		}
		return &limitedConn{Conn: c, l: l, ip: ip, counted: true}, nil
	}
}

// Close closes the listener and unblocks Accept.
func (l *connListener) Close() error {
	l.closing.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *connListener) take(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.byAddr[ip]
	if n >= l.perAddr {
		return false
	}
	l.byAddr[ip] = n + 1
	return true
}

func (l *connListener) release(ip netip.Addr) {
	l.mu.Lock()
	if n := l.byAddr[ip] - 1; n > 0 {
		l.byAddr[ip] = n
	} else {
		delete(l.byAddr, ip)
	}
	l.mu.Unlock()
}

// open is the number of connections ip holds (for tests).
func (l *connListener) open(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byAddr[ip]
}

// connSource is the connection's source address, spelled as remoteIP spells
// it, without allocating.
func connSource(c net.Conn) (netip.Addr, bool) {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ip.Unmap(), ok
}

// refuseConn closes a connection over its address's share at once, with a
// reset: nothing is read or written, so it costs the agent no more than the
// accept. (A 429 written before the request arrives confuses clients that
// check for unsolicited answers, and Go's client logs it; a reset is an error every
// client retries, after its own backoff.)
func refuseConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// limitedConn gives its slots back once, on the first Close.
type limitedConn struct {
	net.Conn
	l       *connListener
	ip      netip.Addr
	counted bool
	closed  atomic.Bool
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		if c.counted {
			c.l.release(c.ip)
		}
		<-c.l.slots
	}
	return err
}

// CloseWrite keeps net/http's half-close before it hangs up on a client
// that is still sending (the wrapped *net.TCPConn has it).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
