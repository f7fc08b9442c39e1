package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podcreds/podcreds/bench/bare"
	"github.com/podcreds/podcreds/kube"
)

// benchSources are the loopback addresses the served pods have.
var benchSources = []netip.Addr{
	netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
	netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5"),
}

// newServingAgent is an agent serving its container endpoint on a loopback
// listener exactly as Run does (serveGroup: both connection caps, the
// timeouts, the drain wrapper) with the per-address rate limit on (set out of
// reach, as bench/hotpath does), for the pods at benchSources, warm.
func newServingAgent(tb testing.TB) (addr string, body []byte) {
	tb.Helper()
	a, _, m := newFakeAgent(tb, 1e9, 1e9)
	for i, ip := range benchSources {
		uid := types.UID(fmt.Sprintf("uid-%d", i))
		a.index.upsert(&kube.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("app-%d", i), UID: uid},
			Spec:       kube.PodSpec{NodeName: "node-a", ServiceAccountName: "app"},
			Status:     kube.PodStatus{Phase: kube.PodRunning, PodIP: ip.String(), PodIPs: []kube.PodIP{{IP: ip.String()}}},
		})
		if err := a.binder.sync(context.Background(), uid); err != nil {
			tb.Fatal(err)
		}
	}
	h := &containerHandler{a: a, stats: newEndpointStats(m, "container")}
	srv, bound, err := a.serveGroup("127.0.0.1:0", h)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { shutdown([]*http.Server{srv}, time.Second) })
	h.hosts, _ = hostsFor(bound.String())
	cl := newRawClient(tb, bound.String(), benchSources[0], true)
	defer cl.close()
	if body, err = cl.get(); err != nil {
		tb.Fatal(err)
	}
	return bound.String(), body
}

// newBareServer serves the bare ceiling as bench/hotpath runs it: a
// net/http server with no options, answering a body of size bytes.
func newBareServer(tb testing.TB, size int) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: bare.NewHandler(bytes.Repeat([]byte("x"), size))}
	go func() { _ = srv.Serve(l) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// processCPU is this process's user and system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawClient is the least a client can do for one GET at a time: write a
// fixed request, read the status line and headers, skip the body. Both
// servers get the same client, so the difference between them is the
// server's.
type rawClient struct {
	tb        testing.TB
	addr      string
	src       netip.Addr
	keepAlive bool
	req       []byte
	conn      *net.TCPConn
	br        *bufio.Reader
}

func newRawClient(tb testing.TB, addr string, src netip.Addr, keepAlive bool) *rawClient {
	req := "GET /v1/credentials HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: bench\r\n"
	if !keepAlive {
		req += "Connection: close\r\n"
	}
	return &rawClient{tb: tb, addr: addr, src: src, keepAlive: keepAlive, req: []byte(req + "\r\n"), br: bufio.NewReaderSize(nil, 4096)}
}

func (c *rawClient) dial() error {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.src, 0)), KeepAlive: -1}
	conn, err := d.Dial("tcp", c.addr)
	if err != nil {
		return err
	}
	c.conn = conn.(*net.TCPConn)
	c.br.Reset(c.conn)
	return nil
}

// get does one request and returns the body (a view into the reader's
// buffer, valid until the next get).
func (c *rawClient) get() ([]byte, error) {
	if c.conn == nil {
		if err := c.dial(); err != nil {
			return nil, err
		}
	}
	if _, err := c.conn.Write(c.req); err != nil {
		return nil, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return nil, fmt.Errorf("status line %q", line)
	}
	n := -1
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return nil, fmt.Errorf("no Content-Length")
	}
	body, err := c.br.Peek(n)
	if err != nil {
		return nil, err
	}
	_, _ = c.br.Discard(n)
	if !c.keepAlive {
		// As bench/loadgen does: a reset, so no TIME_WAIT is left behind.
		_ = c.conn.SetLinger(0)
		c.close()
	}
	return body, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// BenchmarkServe drives the container endpoint over real loopback
// connections, through everything a request meets in the agent (the
// connection caps, the server's timeouts, rate limit, pod lookup, role,
// cache), beside the bare server bench/hotpath compares it with, from four
// pod addresses at once. The same client drives both, so the difference in
// ns/op and allocs/op is the servers'. `go test -cpuprofile` of one sub-
// benchmark shows where the agent's share goes.
func BenchmarkServe(b *testing.B) {
	agentAddr, body := newServingAgent(b)
	bareAddr := newBareServer(b, len(body))
	for _, keepAlive := range []bool{true, false} {
		mode := "keepalive"
		if !keepAlive {
			mode = "conn-per-request"
		}
		for _, t := range []struct{ name, addr string }{{"bare", bareAddr}, {"podcreds", agentAddr}} {
			b.Run(t.name+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(1) // GOMAXPROCS clients
				next := make(chan netip.Addr, 64)
				for i := range cap(next) {
					next <- benchSources[i%len(benchSources)]
				}
				cpu0 := processCPU(b)
				b.RunParallel(func(pb *testing.PB) {
					cl := newRawClient(b, t.addr, <-next, keepAlive)
					defer cl.close()
					for pb.Next() {
						got, err := cl.get()
						if err != nil {
							b.Error(err)
							return
						}
						if len(got) != len(body) {
							b.Errorf("body of %d bytes, want %d", len(got), len(body))
							return
						}
					}
				})
				// CPU of the whole process (clients too) per request: unlike
				// ns/op it does not depend on how busy the machine's other
				// cores are.
				b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
