package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// rawConn is a client connection from a pod address that the test drives by
// hand, so it can hold the connection as long as it likes.
type rawConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialFrom(t *testing.T, ip netip.Addr, target string) (*rawConn, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", target)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReader(c)}, nil
}

// get sends one credentials request on the connection and reads the answer.
func (rc *rawConn) get(host string) (*http.Response, error) {
	_ = rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = rc.c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprintf(rc.c, "GET /v1/credentials HTTP/1.1\r\nHost: %s\r\n\r\n", host); err != nil {
		return nil, err
	}
	res, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res, err
}

// closedByServer reports whether the server has closed the connection
// (read returns EOF or a reset) within wait.
func (rc *rawConn) closedByServer(wait time.Duration) bool {
	_ = rc.c.SetReadDeadline(time.Now().Add(wait))
	_, err := rc.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestOneAddressCannotTakeEveryConnection: a pod opens as many connections
// as the agent's default connection cap, asks once on each and holds them.
// Another pod is still answered at once, well within an SDK's timeout; the
// hoarder keeps only its share, and its connections beyond it are reset at
// once, not queued.
func TestOneAddressCannotTakeEveryConnection(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	// Per-address rate limiting is a different defence; off here, so the
	// hoarder's requests are all answered and its connections stay open.
	h := startAgent(t, harnessOptions{node: "node-" + ns, rateLimit: -1})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	hoarder, victim := addr(60, 0, 1), addr(60, 0, 2)
	for i, ip := range []netip.Addr{hoarder, victim} {
		if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: fmt.Sprintf("pod-%d", i), ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the victim to be served", func() bool { return h.get(victim).Status == http.StatusOK })

	u, _ := url.Parse(h.url)
	const defaultMaxConnections = 1024 // agent.Options.MaxConnections' default
	var (
		mu       sync.Mutex
		held     []*rawConn
		refused  int
		problems []string
	)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for range defaultMaxConnections {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rc, err := dialFrom(t, hoarder, u.Host)
			if err != nil {
				mu.Lock()
				if isTimeout(err) {
					problems = append(problems, err.Error())
				} else {
					refused++ // reset before the dial returned
				}
				mu.Unlock()
				return
			}
			res, err := rc.get(u.Host)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && res.StatusCode == http.StatusOK:
				held = append(held, rc)
			case err != nil && !isTimeout(err):
				refused++ // reset at once
				rc.c.Close()
			default:
				problems = append(problems, fmt.Sprintf("%v %v", res, err))
				rc.c.Close()
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, rc := range held {
			rc.c.Close()
		}
	})
	if len(problems) > 0 {
		t.Fatalf("%d of the hoarder's connections neither served nor refused, e.g. %s", len(problems), problems[0])
	}

	// The victim, as botocore asks: one connection, two seconds.
	c := podClient(victim)
	c.Timeout = 2 * time.Second
	res, err := c.Get(h.url)
	if err != nil {
		t.Fatalf("another pod was not answered while one address holds %d connections: %v", len(held), err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("victim answered %d", res.StatusCode)
	}
	if len(held) > 32 || refused != defaultMaxConnections-len(held) {
		t.Errorf("the hoarder holds %d connections (%d refused), want at most its share of 32", len(held), refused)
	}
	if got := testutil.ToFloat64(h.metrics.ConnectionsRefused); int(got) != refused {
		t.Errorf("podcreds_http_connections_refused_total is %v, want the %d connections refused", got, refused)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestRefusalsAndIdleConnectionsAreClosed: a refused request (429 here) gets
// its connection closed, and a kept-alive connection left idle is closed
// after agent.IdleTimeout, so neither keeps a slot.
func TestRefusalsAndIdleConnectionsAreClosed(t *testing.T) {
	ctx := ctxT(t)
	ns := uniqueName(t)
	h := startAgent(t, harnessOptions{node: "node-" + ns, rateLimit: 1})
	if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	ip := addr(60, 1, 1)
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "pod", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(h.url)
	eventually(t, 10*time.Second, "the pod to be indexed", func() bool {
		time.Sleep(time.Second) // the rate limit is 1/s
		return h.get(ip).Status == http.StatusOK
	})

	t.Run("a 429 closes the connection", func(t *testing.T) {
		rc, err := dialFrom(t, ip, u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.c.Close()
		var res *http.Response
		for range 5 { // the bucket holds one; the second request is refused
			if res, err = rc.get(u.Host); err != nil || res.StatusCode != http.StatusOK {
				break
			}
		}
		if err != nil || res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("want a 429, got %v %v", res, err)
		}
		if !rc.closedByServer(time.Second) {
			t.Error("the connection stayed open after a 429")
		}
	})
	t.Run("an idle kept-alive connection is closed", func(t *testing.T) {
		time.Sleep(2 * time.Second) // refill the bucket
		rc, err := dialFrom(t, ip, u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.c.Close()
		if res, err := rc.get(u.Host); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%v %v", res, err)
		}
		if !rc.closedByServer(agent.IdleTimeout + 5*time.Second) {
			t.Errorf("an idle connection was still open %s after its request", agent.IdleTimeout+5*time.Second)
		}
	})
}
