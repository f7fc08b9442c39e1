package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// TestLeavingAgentClosesKeptAliveConnectionsByAnswering: after SIGTERM the
// agent leaves the listening group at once, but a request arriving on a
// connection the client kept alive is still answered, with Connection:
// close, so the client moves to a new connection (to the agent that stays)
// without a failed request. Closing idle connections at once instead races
// the client's next request on them: a request that is not safe to resend
// (an IMDS token PUT) then fails.
func TestLeavingAgentClosesKeptAliveConnectionsByAnswering(t *testing.T) {
	for i, tc := range []struct {
		name       string
		drainDelay time.Duration
		wantAnswer bool
	}{
		{"with a drain delay the request is answered and closes the connection", 2 * time.Second, true},
		{"without one the kept-alive connection is closed under the client", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			ns := fmt.Sprintf("drain-%d", i)
			h := startAgent(t, harnessOptions{node: "node-" + ns, drainDelay: tc.drainDelay})
			if _, err := env.CreateServiceAccount(ctx, ns, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
				t.Fatal(err)
			}
			ip := addr(28, 0, byte(i+1))
			if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app", ServiceAccount: "app", Node: h.node, IP: ip}); err != nil {
				t.Fatal(err)
			}
			listen := h.agent.Addrs()[0].String()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 5 * time.Second}
			conn, err := d.DialContext(ctx, "tcp", listen)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			ask := func() (*http.Response, error) {
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(conn, "GET /v1/credentials HTTP/1.1\r\nHost: %s\r\n\r\n", listen); err != nil {
					return nil, err
				}
				res, err := http.ReadResponse(br, nil)
				if err == nil {
					res.Body.Close()
				}
				return res, err
			}
			if res, err := ask(); err != nil || res.StatusCode != http.StatusOK || res.Close {
				t.Fatalf("before the stop: %v %v", res, err)
			}

			go h.stop()
			// The agent has left the group once nothing accepts on its address.
			eventually(t, 5*time.Second, "the agent to close its listener", func() bool {
				c, err := net.DialTimeout("tcp", listen, 100*time.Millisecond)
				if err == nil {
					c.Close()
				}
				return err != nil
			})
			time.Sleep(100 * time.Millisecond) // past the moment Shutdown closes idle connections
			res, err := ask()
			if !tc.wantAnswer {
				if err == nil {
					t.Fatalf("the request on the kept-alive connection was answered %s without a drain delay: the check proves nothing", res.Status)
				}
				return
			}
			if err != nil {
				t.Fatalf("the request on the kept-alive connection after the agent left: %v, want an answer", err)
			}
			if res.StatusCode != http.StatusOK || !res.Close {
				t.Fatalf("answered %s, close %v; want 200 with Connection: close", res.Status, res.Close)
			}
		})
	}
}
