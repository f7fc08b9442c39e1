// Package agent is podcreds' node agent: it identifies callers by source
// address through an informer limited to its node, resolves their
// ServiceAccount's role, and serves credentials from the cache on the
// container-credentials endpoints, with health and metrics beside them.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/podevents"
	"github.com/podcreds/podcreds/roles"
)

// Listener is one credentials listen address.
type Listener struct {
	// Addr is host:port, e.g. 169.254.170.23:80 or 127.0.0.1:0 in tests.
	Addr string
	// AnyPath serves credentials on every path (the ECS address, where
	// RELATIVE_URI decides the path).
	AnyPath bool
}

// Options configures an Agent. Every field without a stated default is
// required.
type Options struct {
	NodeName string
	Client   kube.Client
	// Cache serves credentials; Tokens, if set, forgets deleted pods' tokens.
	Cache  CredentialCache
	Tokens TokenDropper

	Listeners []Listener
	// IMDSListeners serve the IMDS-compatible endpoint (opt-in; production
	// address 169.254.169.254:80). IMDSTokenMode defaults to required;
	// IMDSRegion and IMDSAvailabilityZone are what placement/ reports.
	IMDSListeners        []string
	IMDSTokenMode        IMDSTokenMode
	IMDSRegion           string
	IMDSAvailabilityZone string
	// IMDSKey, if set, is the key IMDS session tokens are HMAC'd with,
	// shared by every agent on the node (LoadIMDSKey) so tokens survive an
	// upgrade; nil: a random key per process.
	IMDSKey *[IMDSKeySize]byte
	// HealthAddr serves /healthz and /readyz; MetricsAddr serves /metrics.
	// Empty disables one.
	HealthAddr, MetricsAddr string
	// HealthSocket, if set, also serves /healthz and /readyz on a Unix
	// socket at this path: on a node where an old and a new agent share
	// HealthAddr (a reuseport group) a TCP probe may reach either, while a
	// socket in the container's own filesystem reaches only its own agent
	// (podcreds probe).
	HealthSocket string
	Gatherer     prometheus.Gatherer

	// CredentialsPath is the container endpoint's path (default /v1/credentials).
	CredentialsPath string
	// DefaultAudience and DefaultTokenExpiration apply to ServiceAccounts
	// without IRSA's audience/token-expiration annotations.
	DefaultAudience        string
	DefaultTokenExpiration time.Duration
	// UnknownPodWait is how long a request from an unknown address waits for
	// the informer before asking the API server (default 1s).
	UnknownPodWait time.Duration
	// ServiceAccountTTL is how long a ServiceAccount's role is remembered
	// (default 30s).
	ServiceAccountTTL time.Duration
	// ShutdownTimeout bounds draining on stop (default 10s).
	ShutdownTimeout time.Duration
	// DrainDelay is how long, after leaving the listening group on stop,
	// the agent keeps answering on open connections (each answer closing
	// its connection) before it closes the idle ones (default 2s; negative:
	// none). Kept-alive clients move to new connections, which reach the
	// agent that stays, instead of racing a close.
	DrainDelay time.Duration
	// StartupTaint, if set, is the key of a NoSchedule taint the node
	// registers with; the agent removes it through Nodes once it serves.
	StartupTaint string
	Nodes        kube.NodeTaints
	// WarmTimeout bounds how long a starting agent waits for every pod's
	// credentials before it joins the listening group anyway (default 30s).
	WarmTimeout time.Duration
	// RateLimit and RateBurst bound requests per source address (per
	// second, burst); RateLimit < 0 disables it (default 50/s, burst 100).
	RateLimit float64
	RateBurst int
	// TokenMode and Verifier control the container endpoint's check of a
	// presented ServiceAccount token (default if-present; off when Verifier
	// is nil). hostNetwork pods are served only with a verified token.
	TokenMode TokenMode
	Verifier  Verifier
	// AllowedAccounts, if set, are the only AWS accounts whose roles are
	// served (a pod asking for another account's role gets 403).
	AllowedAccounts []string
	// MaxConnections caps concurrent connections per listener (default
	// 1024); past it new connections wait in the kernel's backlog.
	// MaxConnectionsPerAddress caps those of one source address (default
	// 32); past it a new connection is reset at once.
	MaxConnections           int
	MaxConnectionsPerAddress int
	// Events, if set, hears of every identified pod's refusals and
	// successes and tells the pod through Kubernetes Events.
	Events *podevents.Notifier

	Logger  *zap.Logger
	Metrics *metrics.Metrics
	Clock   clock.PassiveClock
}

// Agent is a running node agent.
type Agent struct {
	opts    Options
	logger  *zap.Logger
	metrics *metrics.Metrics
	index   *PodIndex
	roles   *roles.RoleResolver
	cache   CredentialCache
	binder  *binder
	limiter *sourceLimiter

	// realClock is set when opts.Clock is the real clock (see clockAt).
	realClock bool

	ready    atomic.Bool
	warm     atomic.Bool
	draining atomic.Bool
	mu       sync.Mutex
	group    []net.Listener // credential and IMDS listeners: the reuseport group
	addrs    []net.Addr     // bound credential listeners, in Options order
	imds     []net.Addr     // bound IMDS listeners, in Options order
	side     []net.Addr     // bound health and metrics listeners
	servers  []*http.Server
	boundErr chan error
}

// New builds an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.NodeName == "" || opts.Client == nil || opts.Cache == nil || opts.Logger == nil || opts.Metrics == nil {
		return nil, errors.New("agent: NodeName, Client, Cache, Logger and Metrics are required")
	}
	if opts.CredentialsPath == "" {
		opts.CredentialsPath = "/v1/credentials"
	}
	if opts.UnknownPodWait <= 0 {
		opts.UnknownPodWait = time.Second
	}
	if opts.ServiceAccountTTL <= 0 {
		opts.ServiceAccountTTL = 30 * time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	if opts.StartupTaint != "" && opts.Nodes == nil {
		return nil, errors.New("agent: a StartupTaint needs Nodes to remove it with")
	}
	if opts.DrainDelay == 0 {
		opts.DrainDelay = 2 * time.Second
	}
	if opts.WarmTimeout <= 0 {
		opts.WarmTimeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.RateLimit == 0 {
		opts.RateLimit, opts.RateBurst = 50, 100
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = 1024
	}
	if opts.MaxConnectionsPerAddress <= 0 {
		opts.MaxConnectionsPerAddress = 32
	}
	opts.MaxConnectionsPerAddress = min(opts.MaxConnectionsPerAddress, opts.MaxConnections)
	switch opts.TokenMode {
	case "":
		opts.TokenMode = TokenIfPresent
	case TokenOff, TokenIfPresent, TokenRequired:
	default:
		return nil, fmt.Errorf("agent: token mode %q is not off, if-present or required", opts.TokenMode)
	}
	if opts.TokenMode == TokenRequired && opts.Verifier == nil {
		return nil, errors.New("agent: token mode required needs a Verifier")
	}
	switch opts.IMDSTokenMode {
	case "":
		opts.IMDSTokenMode = IMDSTokensRequired
	case IMDSTokensRequired, IMDSTokensOptional:
	default:
		return nil, fmt.Errorf("agent: IMDS token mode %q is neither %q nor %q", opts.IMDSTokenMode, IMDSTokensRequired, IMDSTokensOptional)
	}
	a := &Agent{opts: opts, logger: opts.Logger, metrics: opts.Metrics, cache: opts.Cache, boundErr: make(chan error, 1)}
	_, a.realClock = opts.Clock.(clock.RealClock)
	a.limiter = newSourceLimiter(opts.RateLimit, opts.RateBurst)
	a.roles = roles.NewRoleResolver(opts.Client, opts.Clock, opts.ServiceAccountTTL, opts.DefaultAudience, opts.DefaultTokenExpiration, opts.AllowedAccounts)
	a.binder = newBinder(a.roles, opts.Cache, opts.Tokens, opts.Logger)
	a.index = NewPodIndex(opts.Client, opts.NodeName, opts.UnknownPodWait, opts.Logger, opts.Metrics, a.binder.enqueue)
	a.binder.index = a.index
	return a, nil
}

// Run serves until ctx ends, then drains: it reports not ready, leaves the
// listening group (closes its credential listeners, whose queued connections
// the kernel hands to another agent of the group), answers on open
// connections for DrainDelay with each answer closing its connection, lets
// requests in flight finish (bounded by ShutdownTimeout) and returns.
//
// The health and metrics listeners come up first, so a liveness probe passes
// while the informer syncs; the credential listeners open (join the group)
// once the agent is warm: the informer has synced and every pod on the node
// with a role has credentials or a failure (bounded by WarmTimeout), so a
// new agent beside an old one takes no request it would answer slower, and
// none is answered "unknown pod" just because the agent has only started.
func (a *Agent) Run(ctx context.Context) error {
	var side []*http.Server
	if a.opts.HealthAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
		mux.HandleFunc("/readyz", a.serveReadyz)
		mux.HandleFunc("GET "+DebugPodPath+"{namespace}/{name}", a.serveDebugPod)
		mux.HandleFunc(DebugPodPath, serveDebugMisuse)
		srv, addr, err := a.serve(a.opts.HealthAddr, mux, false)
		if err != nil {
			return err
		}
		side = append(side, srv)
		a.setAddr(&a.side, addr)
		if a.opts.HealthSocket != "" {
			srv, err := a.serveSocket(a.opts.HealthSocket, mux)
			if err != nil {
				shutdown(side, time.Second)
				return err
			}
			side = append(side, srv)
		}
	}
	if a.opts.MetricsAddr != "" && a.opts.Gatherer != nil {
		mux := http.NewServeMux()
		// Uncompressed: the page is a few kilobytes, scraped from the node,
		// and each pooled gzip writer would keep about 800 KiB of heap —
		// a sixth of the agent's at 250 pods (bench/scale -only memory).
		mux.Handle("/metrics", promhttp.HandlerFor(a.opts.Gatherer, promhttp.HandlerOpts{DisableCompression: true}))
		srv, addr, err := a.serve(a.opts.MetricsAddr, mux, false)
		if err != nil {
			shutdown(side, time.Second)
			return err
		}
		side = append(side, srv)
		a.setAddr(&a.side, addr)
	}
	defer shutdown(side, time.Second)

	informerCtx, stopInformer := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { stopInformer(); a.index.Shutdown() }()
	start := time.Now()
	if err := a.index.Start(informerCtx); err != nil {
		return err
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-informerCtx.Done():
		}
		stopInformer()
	}()
	binderDone := make(chan struct{})
	go func() { a.binder.run(informerCtx, 4); close(binderDone) }()
	defer func() { stopInformer(); <-binderDone }()
	a.logger.Info("pod informer synced", zap.String("node", a.opts.NodeName), zap.Duration("took", time.Since(start)))
	if err := a.waitWarm(ctx, start); err != nil {
		// Stopped while warming: it never joined the group, nothing to drain.
		a.logger.Info("stopped while warming up", zap.Error(err))
		return nil
	}

	for _, l := range a.opts.Listeners {
		hosts, err := hostsFor(l.Addr)
		if err != nil {
			return fmt.Errorf("listen address %q: %w", l.Addr, err)
		}
		h := &containerHandler{a: a, anyPath: l.AnyPath, stats: newEndpointStats(a.metrics, "container")}
		srv, addr, err := a.serveGroup(l.Addr, h)
		if err != nil {
			shutdown(a.servers, time.Second)
			return err
		}
		a.setAddr(&a.addrs, addr)
		// Port 0 (tests): accept the port the kernel chose, too.
		if more, err := hostsFor(addr.String()); err == nil {
			for k := range more {
				hosts[k] = struct{}{}
			}
		}
		h.hosts = hosts
		a.servers = append(a.servers, srv)
	}
	if len(a.opts.IMDSListeners) > 0 {
		tokens := newIMDSTokens(a.opts.IMDSKey)
		for _, addr := range a.opts.IMDSListeners {
			hosts, err := hostsFor(addr)
			if err != nil {
				shutdown(a.servers, time.Second)
				return fmt.Errorf("IMDS listen address %q: %w", addr, err)
			}
			// Pods address IMDS by its well-known IP; when a DNAT rule sends
			// that to the agent, the Host header still says so.
			hosts[imdsMetadataHost] = struct{}{}
			h := &imdsHandler{a: a, tokens: tokens, stats: newEndpointStats(a.metrics, "imds")}
			srv, bound, err := a.serveGroup(addr, h)
			if err != nil {
				shutdown(a.servers, time.Second)
				return err
			}
			a.setAddr(&a.imds, bound)
			if more, err := hostsFor(bound.String()); err == nil {
				for k := range more {
					hosts[k] = struct{}{}
				}
			}
			h.hosts = hosts
			a.servers = append(a.servers, srv)
		}
	}
	a.ready.Store(true)
	a.logger.Info("serving credentials", zap.Strings("listen", a.listenAddrs()))
	taintDone := make(chan struct{})
	taintCtx, stopTaint := context.WithCancel(ctx)
	if a.opts.StartupTaint != "" && a.opts.Nodes != nil {
		go func() { defer close(taintDone); a.removeStartupTaint(taintCtx, a.opts.Nodes, a.opts.StartupTaint) }()
	} else {
		close(taintDone)
	}
	defer func() { stopTaint(); <-taintDone }()
	if ok, why := RequestMigration(); !ok {
		a.logger.Warn("an agent leaving during an upgrade will reset the connections queued on it", zap.String("reason", why))
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-a.boundErr:
	}
	a.ready.Store(false)
	a.logger.Info("shutting down: leaving the listening group and draining requests",
		zap.Duration("delay", max(a.opts.DrainDelay, 0)), zap.Duration("timeout", a.opts.ShutdownTimeout))
	a.leave()
	if a.opts.DrainDelay > 0 {
		time.Sleep(a.opts.DrainDelay)
	}
	shutdown(a.servers, a.opts.ShutdownTimeout)
	return runErr
}

// IdleTimeout is how long a kept-alive connection may sit unused. SDKs ask
// once per credential refresh (minutes apart), so a few seconds cost them
// nothing and keep idle connections from holding the agent's slots.
const IdleTimeout = 5 * time.Second

// leave closes the credential and IMDS listeners: no new connection reaches
// this agent, and those waiting in its accept queues are migrated to another
// agent's listeners (net.ipv4.tcp_migrate_req) or, with none, reset. Open
// connections stay, and each answer on them from now on closes its
// connection (serveGroup).
func (a *Agent) leave() {
	a.draining.Store(true)
	a.mu.Lock()
	group := a.group
	a.mu.Unlock()
	for _, l := range group {
		_ = l.Close()
	}
}

// serveGroup serves h on addr as one listener of the node's reuseport group.
func (a *Agent) serveGroup(addr string, h http.Handler) (*http.Server, net.Addr, error) {
	closing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.draining.Load() {
			// Go's server closes the connection after this answer; the
			// client's next request opens a connection to the agent that stays.
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	return a.serve(addr, closing, true)
}

// serve binds addr and serves h on it with timeouts that a credentials
// request (a few hundred bytes each way) never comes near, so a slow or
// stalled client cannot hold a connection.
//
// Every listener sets SO_REUSEPORT (listen.go), the health and metrics ones
// too, so a new agent can start beside an old one; group marks the ones
// leave closes.
func (a *Agent) serve(addr string, h http.Handler, group bool) (*http.Server, net.Addr, error) {
	raw, err := listenGroup(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	var l net.Listener = &onceCloser{Listener: raw}
	if group {
		a.mu.Lock()
		a.group = append(a.group, l)
		a.mu.Unlock()
	}
	// A bounded number of connections, and a bounded share of them per
	// source address; the connections keep the server's deadlines below and
	// the listener applies each once it has passed, at most 250 ms late, so
	// a request arms no runtime timer (connlimit.go).
	l = newConnListener(l, a.opts.MaxConnections, a.opts.MaxConnectionsPerAddress, a.metrics.ConnectionsRefused)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(a.logger.Named("http")),
		ConnContext:       connContext,
	}
	go func() {
		// A listener closed by leave ends Serve with an error too: expected.
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !a.draining.Load() {
			select {
			case a.boundErr <- fmt.Errorf("serve %s: %w", addr, err):
			default:
			}
		}
	}()
	return srv, l.Addr(), nil
}

func (a *Agent) setAddr(list *[]net.Addr, addr net.Addr) {
	a.mu.Lock()
	*list = append(*list, addr)
	a.mu.Unlock()
}

func shutdown(servers []*http.Server, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if s.Shutdown(ctx) != nil {
				_ = s.Close()
			}
		})
	}
	wg.Wait()
}

// Addrs returns the bound credential listeners, in Options order.
func (a *Agent) Addrs() []net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]net.Addr(nil), a.addrs...)
}

// IMDSAddrs returns the bound IMDS listeners, in Options order.
func (a *Agent) IMDSAddrs() []net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]net.Addr(nil), a.imds...)
}

// SideAddrs returns the bound health and metrics listeners, in that order
// (those configured).
func (a *Agent) SideAddrs() []net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]net.Addr(nil), a.side...)
}

func (a *Agent) listenAddrs() []string {
	var s []string
	for _, ad := range append(a.Addrs(), a.IMDSAddrs()...) {
		s = append(s, ad.String())
	}
	return s
}

// Pod returns what the agent currently knows of the pod with uid on its
// node, or nil once the pod's deletion has reached it.
func (a *Agent) Pod(uid types.UID) *Pod { return a.index.Pod(uid) }

// Ready reports whether the agent serves credentials: informer synced,
// listeners bound, not shutting down.
func (a *Agent) Ready() bool { return a.ready.Load() }

func (a *Agent) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case a.ready.Load():
		writeText(w, http.StatusOK, "ok")
	case !a.index.Synced():
		writeText(w, http.StatusServiceUnavailable, "pod informer not synced")
	case !a.warm.Load():
		writeText(w, http.StatusServiceUnavailable, "warming: fetching credentials for the pods on this node")
	default:
		writeText(w, http.StatusServiceUnavailable, "not serving (starting or shutting down)")
	}
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header()["Content-Type"] = textContentType
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}
