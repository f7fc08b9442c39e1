package loadgen

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// dialer opens a worker's connections from its source addresses.
//
// Connection-per-request mode opens thousands of connections a second, and
// each closed TCP connection normally leaves a TIME_WAIT socket behind for
// 60 s that holds its 4-tuple; on one (source IP, destination) pair there are
// only about 28 000 ephemeral ports. Two things keep a run from running out:
//
//   - closeReset: the client closes with SO_LINGER 0. Go's server closes
//     first after a "Connection: close" response, leaving itself in
//     FIN_WAIT_2; the client's close then sends RST instead of FIN, which
//     tears down both ends at once, so neither side keeps a TIME_WAIT socket.
//     The client closes only after reading the whole body, so no data is lost.
//   - IP_BIND_ADDRESS_NO_PORT (Linux): binding a source address normally
//     picks the port at bind time, from the port space of the source IP
//     alone and without TIME_WAIT reuse. With this option the port is picked
//     at connect time, per (source, destination) pair, where the kernel's
//     tcp_tw_reuse (on for loopback by default) applies.
//
// Spreading load over many source IPs multiplies the port space further.
type dialer struct {
	sources    []netip.Addr
	next       atomic.Uint64 // index of the next source; dials may overlap
	timeout    time.Duration
	closeReset bool
}

// DialContext has the signature of http.Transport.DialContext.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{
		Timeout:   d.timeout,
		KeepAlive: -1, // connections are short or busy: probes only add noise
	}
	if len(d.sources) > 0 {
		src := d.sources[(d.next.Add(1)-1)%uint64(len(d.sources))]
		nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		nd.Control = bindNoPort
	}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && d.closeReset {
		// Best effort: a failure only costs a TIME_WAIT socket.
		_ = tc.SetLinger(0)
	}
	return c, nil
}
