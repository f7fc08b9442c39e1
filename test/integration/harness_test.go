package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/agent/stack"
	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/oidc"
	"github.com/podcreds/podcreds/podevents"
	"github.com/podcreds/podcreds/tokenreq"
)

// countingSTS wraps an STS client (MinIO's, or a scripted fake) to count
// calls and optionally hold each one, so a test can prove how many exchanges
// happened and that requests overlapped them.
type countingSTS struct {
	next  tokenreq.STSClient
	calls atomic.Int64
	delay time.Duration

	mu    sync.Mutex
	times []time.Time // when each call was made
}

// callTimes returns when each STS call was made.
func (c *countingSTS) callTimes() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.times...)
}

func (c *countingSTS) AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, opts ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	c.calls.Add(1)
	c.mu.Lock()
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	if c.delay > 0 {
		select {
		case <-time.After(c.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.next.AssumeRoleWithWebIdentity(ctx, in, opts...)
}

// AssumeRole passes a second hop through when the wrapped client makes
// them (the fake does, and MinIO's client), so the stack chains as it would
// with a real STS client.
func (c *countingSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, opts ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	next, ok := c.next.(tokenreq.ChainClient)
	if !ok {
		return nil, fmt.Errorf("%T makes no second hop", c.next)
	}
	return next.AssumeRole(ctx, in, opts...)
}

// agentHarness is one agent wired as cmd/podcreds wires it, on a loopback
// port, for one test's node.
type agentHarness struct {
	t        *testing.T
	node     string
	agent    *agent.Agent
	cache    *cache.Cache
	sts      *countingSTS
	metrics  *metrics.Metrics
	registry *prometheus.Registry
	url      string // credentials URL
	stop     func()
}

type harnessOptions struct {
	node       string
	sts        tokenreq.STSClient // default: MinIO
	duration   time.Duration      // credential duration (default 15m, MinIO's minimum)
	stsDelay   time.Duration
	cache      cache.Options   // Logger and Metrics are filled in
	wait       time.Duration   // unknown-pod wait (default 300ms)
	side       bool            // also serve health and metrics on loopback
	imds       bool            // also serve the IMDS endpoint on loopback
	rateLimit  float64         // per-address limit; 0: the agent's default, <0: off
	tokenMode  agent.TokenMode // presented-token check; default off here
	stsRate    float64         // node STS budget (calls/s); 0: none
	drainDelay time.Duration   // the agent's DrainDelay; 0: none (tests stop fast)
	// startupTaint and nodes: the agent's StartupTaint and its Nodes client.
	startupTaint string
	nodes        kube.NodeTaints
	// beforeReady, if set, is called with the /readyz URL (needs side)
	// while the agent is not ready yet, every 10ms.
	beforeReady func(a *agent.Agent, readyz string)
	client      kube.Client // the agent's API client; default: admin (secrets.agentClient)
	// wrapClient, if set, wraps the agent's Kubernetes client (to count
	// the agent's API calls).
	wrapClient func(kube.Client) kube.Client
	events     bool // write Events on pods to the API server
	// eventsConfig writes them as another user than the suite's admin;
	// eventInterval is --event-interval (default podevents' own).
	eventsConfig  *rest.Config
	eventInterval time.Duration
	// eventUnavailableAfter is the CredentialsUnavailable threshold
	// (default podevents' own).
	eventUnavailableAfter time.Duration
	accounts              []string // --allowed-accounts
}

func startAgent(t *testing.T, o harnessOptions) *agentHarness {
	t.Helper()
	if o.sts == nil {
		o.sts = env.STSClient()
	}
	if o.duration == 0 {
		o.duration = 15 * time.Minute
	}
	if o.wait == 0 {
		o.wait = 300 * time.Millisecond
	}
	// Debug level everywhere, written both to the test's log and to the
	// sink that the secret scan reads after the suite.
	logger := zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel), zaptest.WrapOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewTee(c, secrets.core())
	})))
	client := o.client
	if client == nil {
		client = secrets.agentClient()
	}
	if o.wrapClient != nil {
		client = o.wrapClient(client)
	}
	counting := &countingSTS{next: o.sts, delay: o.stsDelay}
	if o.tokenMode == "" {
		o.tokenMode = agent.TokenOff
	}
	var verifier agent.Verifier
	if o.tokenMode != agent.TokenOff {
		hc, err := env.AnonymousHTTPClient()
		if err != nil {
			t.Fatal(err)
		}
		if verifier, err = oidc.New(oidc.Options{Issuer: env.IssuerURL, Audience: podTokenAudience, HTTPClient: hc, Logger: logger}); err != nil {
			t.Fatal(err)
		}
	}
	var imdsListeners []string
	if o.imds {
		imdsListeners = []string{"127.0.0.1:0"}
	}
	var healthAddr, metricsAddr string
	if o.side {
		healthAddr, metricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	}
	var events eventsv1client.EventsV1Interface
	if o.events {
		cfg := env.Config
		if o.eventsConfig != nil {
			cfg = o.eventsConfig
		}
		var err error
		if events, err = podevents.NewClient(cfg); err != nil {
			t.Fatal(err)
		}
	}
	st, err := stack.Build(stack.Options{
		Events: events, EventInterval: o.eventInterval, EventUnavailableAfter: o.eventUnavailableAfter,
		Client: client, STS: counting, SessionDuration: o.duration, Logger: logger, Cache: o.cache,
		STSRate: o.stsRate, STSBurst: max(1, int(o.stsRate)),
		Agent: agent.Options{
			NodeName: o.node, RateLimit: o.rateLimit, AllowedAccounts: o.accounts, TokenMode: o.tokenMode, Verifier: verifier,
			Listeners:     []agent.Listener{{Addr: "127.0.0.1:0"}},
			IMDSListeners: imdsListeners, IMDSRegion: testenv.Region, IMDSAvailabilityZone: testenv.Region + "a",
			HealthAddr: healthAddr, MetricsAddr: metricsAddr, ShutdownTimeout: 10 * time.Second, DrainDelay: drainDelay(o.drainDelay),
			StartupTaint: o.startupTaint, Nodes: o.nodes,
			DefaultAudience: testenv.Audience, DefaultTokenExpiration: time.Hour, UnknownPodWait: o.wait,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, c, m, reg := st.Agent, st.Cache, st.Metrics, st.Registry
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	eventsDone := make(chan struct{})
	go func() { st.Events.Run(ctx); close(eventsDone) }()
	deadline := time.Now().Add(30 * time.Second)
	for !a.Ready() {
		select {
		case err := <-done:
			t.Fatalf("agent stopped before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("agent not ready after 30s")
		}
		if side := a.SideAddrs(); o.beforeReady != nil && len(side) > 0 {
			o.beforeReady(a, "http://"+side[0].String()+"/readyz")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h := &agentHarness{
		t: t, node: o.node, agent: a, cache: c, sts: counting, metrics: m, registry: reg,
		url: "http://" + a.Addrs()[0].String() + "/v1/credentials",
	}
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent Run: %v", err)
			}
			<-eventsDone
			c.Close()
		})
	}
	t.Cleanup(h.stop)
	return h
}

// drainDelay keeps the harness's agents from waiting out the agent's default
// drain delay on every stop unless a test asks for one.
func drainDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// podClient is an HTTP client whose connections come from ip, as a pod's do.
func podClient(ip netip.Addr) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// reply is one decoded credentials-endpoint answer.
type reply struct {
	Status     int
	RetryAfter string
	Body       map[string]string
}

// podTokenAudience is the audience of the tokens pods present to the agent.
const podTokenAudience = "podcreds"

func (h *agentHarness) get(ip netip.Addr) reply { return h.getWithToken(ip, "") }

// getWithToken asks for credentials from ip, presenting token (if not empty)
// in Authorization as SDKs do from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
func (h *agentHarness) getWithToken(ip netip.Addr, token string) reply {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.url, nil)
	if token != "" {
		req.Header.Set("Authorization", token)
		secrets.recordPresented(token)
	}
	res, err := podClient(ip).Do(req)
	if err != nil {
		h.t.Fatalf("GET %s from %s: %v", h.url, ip, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := reply{Status: res.StatusCode, RetryAfter: res.Header.Get("Retry-After"), Body: map[string]string{}}
	if err := json.Unmarshal(b, &r.Body); err != nil {
		h.t.Fatalf("GET from %s: status %d, body not JSON: %q", ip, res.StatusCode, b)
	}
	secrets.recordServed(r.Body)
	return r
}

// eventually polls cond until it holds or the timeout passes; for waiting on
// another component (informer, background fetch), never for timing claims.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addr returns 127.<a>.<b>.<c>, a pod address.
func addr(a, b, c byte) netip.Addr { return netip.AddrFrom4([4]byte{127, a, b, c}) }

// uniqueName makes a DNS-1123 name from a test name.
func uniqueName(t *testing.T) string {
	n := strings.ToLower(t.Name())
	n = strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(n)
	if len(n) > 50 {
		n = n[:50]
	}
	return strings.Trim(n, "-")
}
