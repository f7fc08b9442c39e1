package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// podAddr returns pod i's address in block: 127.block.(i/250).(i%250+1).
// Every scenario has its own block, so no two pods ever share an address.
// On Linux every 127/8 address is on lo and can be bound without setup.
func podAddr(block byte, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, block, byte(i / 250), byte(i%250 + 1)})
}

// pod is one pod a scenario runs: where it lives and who it runs as.
type pod struct {
	Namespace, Name, ServiceAccount string
	IP                              netip.Addr
}

// createServiceAccounts creates n ServiceAccounts name-000… in ns, each
// annotated with role(i), with a few at a time.
func createServiceAccounts(ctx context.Context, env *testenv.Env, ns string, n int, name func(int) string, role func(int) string) error {
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		return err
	}
	return parallel(ctx, n, 16, func(ctx context.Context, i int) error {
		_, err := env.CreateServiceAccount(ctx, ns, name(i), map[string]string{testenv.RoleAnnotation: role(i)})
		return err
	})
}

// runPod creates p on node and reports it Running with its IP, as the
// scheduler and kubelet would (testenv.RunPod).
func runPod(ctx context.Context, env *testenv.Env, node string, p pod) error {
	_, err := env.RunPod(ctx, testenv.PodSpec{Namespace: p.Namespace, Name: p.Name, ServiceAccount: p.ServiceAccount, Node: node, IP: p.IP})
	return err
}

// parallel runs f(0…n-1) on at most width goroutines and returns the first
// error; after one, the remaining indices are skipped.
func parallel(ctx context.Context, n, width int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(width, n) {
		wg.Go(func() {
			for i := range next {
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// podClient is an HTTP client whose connections come from ip, as a pod's
// do. keepAlive chooses between one kept connection and one per request.
func podClient(ip netip.Addr, keepAlive bool) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 5 * time.Second}
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1},
		Timeout:   10 * time.Second,
	}
}

// answer is one credentials-endpoint response as a pod sees it.
type answer struct {
	Status     int
	RetryAfter time.Duration
	Expiration time.Time // zero unless Status is 200
	Received   time.Time
}

// fetchCredentials sends one request and reads the answer; a 200 must carry
// a parseable Expiration.
func fetchCredentials(ctx context.Context, c *http.Client, url string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return answer{}, err
	}
	res, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	a := answer{Status: res.StatusCode, Received: time.Now()}
	if err != nil {
		return a, err
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil {
		a.RetryAfter = time.Duration(s) * time.Second
	}
	if a.Status != http.StatusOK {
		return a, nil
	}
	var creds struct{ Expiration string }
	if err := json.Unmarshal(body, &creds); err != nil {
		return a, fmt.Errorf("200 with a body that is not JSON: %w", err)
	}
	if a.Expiration, err = time.Parse(time.RFC3339, creds.Expiration); err != nil {
		return a, fmt.Errorf("200 with Expiration %q: %w", creds.Expiration, err)
	}
	return a, nil
}

// firstCredential asks until it gets a 200, as an SDK starting up does: a
// 503 or 429 is retried after its Retry-After (capped at 1 s, SDKs do not
// wait longer at start-up), anything else after 100 ms, until deadline. It
// returns the final answer and the statuses of the attempts that failed.
func firstCredential(ctx context.Context, c *http.Client, url string, deadline time.Time) (answer, []int, error) {
	var failed []int
	for {
		a, err := fetchCredentials(ctx, c, url)
		if err == nil && a.Status == http.StatusOK {
			return a, failed, nil
		}
		if err != nil {
			failed = append(failed, 0)
		} else {
			failed = append(failed, a.Status)
		}
		wait := 100 * time.Millisecond
		if a.Status == http.StatusServiceUnavailable || a.Status == http.StatusTooManyRequests {
			wait = min(max(a.RetryAfter, 50*time.Millisecond), time.Second)
		}
		if time.Now().Add(wait).After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d", a.Status)
			}
			return a, failed, fmt.Errorf("no credentials after %d attempts: %w", len(failed), err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return a, failed, ctx.Err()
		}
	}
}

// statusCounts renders a status histogram as "503×12 404×1" (0: transport
// error), or "none".
func statusCounts(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	s := ""
	for i, c := range codes {
		if i > 0 {
			s += " "
		}
		name := strconv.Itoa(c)
		if c == 0 {
			name = "conn-error"
		}
		s += fmt.Sprintf("%s×%d", name, m[c])
	}
	return s
}
