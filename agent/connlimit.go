package agent

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

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
//
// It also keeps the deadlines net/http sets on its connections (see
// limitedConn.setDeadline): a reaper goroutine, running while any
// connection is open, applies each once it has passed, at most reapInterval
// late.
type connListener struct {
	net.Listener
	slots   chan struct{} // one token per open connection, total cap
	done    chan struct{} // closed by Close, unblocking Accept
	closing sync.Once
	perAddr int
	refused prometheus.Counter // may be nil

	mu     sync.Mutex
	byAddr map[netip.Addr]int // open connections per source; absent at 0
	open   connList           // every open connection, for the reaper
	// reaping says whether the reaper runs: from the first open
	// connection to the tick that finds none, so an idle listener costs
	// no wakeups.
	reaping bool
	now     atomic.Int64 // the reaper's clock: unix nanoseconds of its latest tick
}

// reapInterval is how often a listener applies the deadlines of its
// connections that have passed, and so the most a deadline is late: a 5 s
// ReadHeaderTimeout or IdleTimeout ends a connection within 5.25 s.
const reapInterval = 250 * time.Millisecond

func newConnListener(l net.Listener, total, perAddr int, refused prometheus.Counter) *connListener {
	cl := &connListener{
		Listener: l, slots: make(chan struct{}, total), done: make(chan struct{}),
		perAddr: perAddr, refused: refused, byAddr: map[netip.Addr]int{},
	}
	cl.open.init()
	return cl
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
		lc := &limitedConn{Conn: c, l: l}
		lc.ip, lc.counted = connSource(c) // not TCP (never in production): total cap only
		if !l.take(lc) {
			<-l.slots
			if l.refused != nil {
				l.refused.Inc()
			}
			refuseConn(c)
			continue
		}
		return lc, nil
	}
}

// Close closes the listener and unblocks Accept.
func (l *connListener) Close() error {
	l.closing.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// take counts c against its address's share, if within it, and adds it to
// the open connections.
func (l *connListener) take(c *limitedConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.counted {
		n := l.byAddr[c.ip]
		if n >= l.perAddr {
			return false
		}
		l.byAddr[c.ip] = n + 1
	}
	l.open.push(c)
	if !l.reaping {
		l.reaping = true
		l.now.Store(time.Now().UnixNano())
		go l.reap()
	}
	return true
}

func (l *connListener) release(c *limitedConn) {
	l.mu.Lock()
	if c.counted {
		if n := l.byAddr[c.ip] - 1; n > 0 {
			l.byAddr[c.ip] = n
		} else {
			delete(l.byAddr, c.ip)
		}
	}
	l.open.remove(c)
	l.mu.Unlock()
}

// reap applies, every reapInterval, the deadlines of open connections that
// have passed, until a tick finds no connection open (take starts it again).
func (l *connListener) reap() {
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for now := range t.C {
		l.now.Store(now.UnixNano())
		if !l.reapAt(now.UnixNano()) {
			return
		}
	}
}

// reapAt applies the deadlines that have passed at now (unix nanoseconds),
// and reports whether any connection is open; if none is, the reaper stops.
// The connections are collected under the lock and their sockets touched
// outside it, so Accept and Close never wait on the reaper's system calls.
func (l *connListener) reapAt(now int64) bool {
	var due []*limitedConn // rarely any: allocated only then
	l.mu.Lock()
	if l.open.head.next == &l.open.head {
		l.reaping = false
		l.mu.Unlock()
		return false
	}
	for c := l.open.head.next; c != &l.open.head; c = c.next {
		if c.due(now) {
			due = append(due, c)
		}
	}
	l.mu.Unlock()
	for _, c := range due {
		c.expire(now)
	}
	return true
}

// openBy is the number of connections ip holds (for tests).
func (l *connListener) openBy(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byAddr[ip]
}

// connKey is the context key under which the agent's servers keep a
// request's *limitedConn (connContext), so a request finds its source
// address parsed already.
type connKey struct{}

// connContext is the servers' http.Server.ConnContext.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if lc, ok := c.(*limitedConn); ok && lc.counted {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
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

// limitedConn gives its slots back once, on the first Close, and keeps its
// deadlines for the listener's reaper.
type limitedConn struct {
	net.Conn
	l       *connListener
	ip      netip.Addr
	counted bool
	closed  atomic.Bool

	// What the connection's requests found before, so the next skips the
	// lookups: its address's rate-limit bucket (sourceLimiter.allowFrom)
	// and its pod (PodIndex.lookupFrom).
	bucket atomic.Pointer[bucket]
	pod    atomic.Pointer[podMemo]

	// read and write are the pending deadlines, in unix nanoseconds (0:
	// none), that the reaper applies to the socket once they have passed.
	read, write atomic.Int64
	// mu orders changes to the socket's own deadlines; socketRead and
	// socketWrite say whether the socket has one set (guarded by mu).
	mu                      sync.Mutex
	socketRead, socketWrite bool

	prev, next *limitedConn // in the listener's open list (guarded by l.mu)
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c)
		<-c.l.slots
	}
	return err
}

// Deadlines.
//
// net/http sets a connection's deadlines four times per request: the
// ReadHeaderTimeout, the ReadTimeout, the WriteTimeout, and the IdleTimeout
// once the answer is written (and clears them around the handler). On a
// socket each is a runtime timer; arming one that becomes its processor's
// earliest wakes the network poller or another thread, a system call or a
// futex per request that a server without timeouts never pays
// (bench/hotpath: about a fifth more CPU per kept-alive response). None of
// these deadlines is ever meant to fire on a well-behaved client, so the
// connection keeps them in two words instead, and the listener's reaper puts
// one on the socket only once it has passed: the Read or Write blocked on it
// then fails with the timeout the socket would have given, at most
// reapInterval later. Deadlines that have passed already or are less than two
// intervals away (net/http's "a long time ago", used to interrupt a read at
// once) and clearing a deadline the socket holds go to the socket at once,
// as before.

func (c *limitedConn) SetDeadline(t time.Time) error      { return c.setDeadline(t, true, true) }
func (c *limitedConn) SetReadDeadline(t time.Time) error  { return c.setDeadline(t, true, false) }
func (c *limitedConn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, false, true) }

func (c *limitedConn) setDeadline(t time.Time, read, write bool) error {
	// A deadline that has passed or is about to goes to the socket at once:
	// compared with the reaper's clock, which is at most one interval behind,
	// so a request costs no clock reading of its own.
	var at int64 // kept for the reaper; 0: none
	soon := false
	if !t.IsZero() {
		at = t.UnixNano()
		if soon = at <= c.l.now.Load()+2*int64(reapInterval); soon {
			at = 0
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if read {
		c.read.Store(at)
	}
	if write {
		c.write.Store(at)
	}
	// The socket needs telling when the deadline is due now, or when it
	// holds one that this replaces.
	var err error
	switch {
	case soon:
		err = c.socket(t, read, write)
	case (read && c.socketRead) || (write && c.socketWrite):
		err = c.socket(time.Time{}, read && c.socketRead, write && c.socketWrite)
	}
	return err
}

// socket sets the socket's own read and/or write deadline to t. c.mu is held.
func (c *limitedConn) socket(t time.Time, read, write bool) error {
	var err error
	switch {
	case read && write:
		err = c.Conn.SetDeadline(t)
	case read:
		err = c.Conn.SetReadDeadline(t)
	case write:
		err = c.Conn.SetWriteDeadline(t)
	default:
		return nil
	}
	if read {
		c.socketRead = !t.IsZero()
	}
	if write {
		c.socketWrite = !t.IsZero()
	}
	return err
}

// due reports whether a deadline of c has passed at now.
func (c *limitedConn) due(now int64) bool {
	r, w := c.read.Load(), c.write.Load()
	return (r != 0 && r <= now) || (w != 0 && w <= now)
}

// expire puts the deadlines of c that have passed at now on its socket.
func (c *limitedConn) expire(now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, w := c.read.Load(), c.write.Load()
	read, write := r != 0 && r <= now, w != 0 && w <= now
	if read {
		c.read.Store(0)
	}
	if write {
		c.write.Store(0)
	}
	at := min(r, w)
	if !read {
		at = w
	} else if !write {
		at = r
	}
	_ = c.socket(time.Unix(0, at), read, write)
}

// connList is a circular doubly linked list of connections with a sentinel
// head: adding and removing one costs no allocation and no hashing.
type connList struct{ head limitedConn }

func (cl *connList) init() { cl.head.next, cl.head.prev = &cl.head, &cl.head }

func (cl *connList) push(c *limitedConn) {
	c.prev, c.next = cl.head.prev, &cl.head
	cl.head.prev.next = c
	cl.head.prev = c
}

func (cl *connList) remove(c *limitedConn) {
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
}

// CloseWrite keeps net/http's half-close before it hangs up on a client
// that is still sending (the wrapped *net.TCPConn has it).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
