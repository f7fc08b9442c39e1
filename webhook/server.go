// Package webhook is podcreds' mutating admission webhook: it onboards pods
// to the node agent at creation, writing the credentials endpoint variable,
// the token file variable and a projected ServiceAccount token volume into
// every container and init container of a pod that has a role. The role
// decision is package roles', the agent's own, so a pod is injected exactly
// when the agent would serve it.
//
// Decode (review.go) → decide (plan in inject.go, a pure function of the pod
// and the settings, after roles' decision) → the smallest JSONPatch.
package webhook

import (
	"context"
	"crypto/tls"
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
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
)

// Path is where the webhook admits pods.
const Path = "/mutate"

// Options configure a Server.
type Options struct {
	// API reads ServiceAccounts (informer and live) and namespaces.
	API kube.ServiceAccounts
	// Listen is the HTTPS address the API server calls.
	Listen string
	// CertFile and KeyFile are the serving certificate, reloaded when they
	// change (checked every CertCheckInterval, default 10s).
	CertFile, KeyFile string
	CertCheckInterval time.Duration
	// HealthAddr serves /healthz and /readyz over plain HTTP; MetricsAddr
	// /metrics from Registry. Empty disables either.
	HealthAddr, MetricsAddr string
	Registry                *prometheus.Registry
	// Settings are what is injected.
	Settings Settings
	// ShutdownTimeout bounds the drain on shutdown (default 10s).
	ShutdownTimeout time.Duration
	Logger          *zap.Logger
}

// Server is a running webhook's listeners and state.
type Server struct {
	opts     Options
	certs    *certReloader
	sas      *serviceAccounts
	handler  *handler
	admit    net.Listener
	health   net.Listener
	metrics  net.Listener
	ready    atomic.Bool
	readyCh  chan struct{} // closed once ready
	draining atomic.Bool
}

// New validates opts, loads the certificate and binds the listeners (so
// Addr is known before Run).
func New(opts Options) (*Server, error) {
	if opts.API == nil || opts.Logger == nil || opts.Registry == nil {
		return nil, errors.New("webhook: API, Logger and Registry are required")
	}
	if _, err := ParseEndpoint(opts.Settings.Endpoint); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if opts.Settings.TokenAudience == "" || opts.Settings.TokenExpiration < roles.MinTokenExpiration {
		return nil, fmt.Errorf("webhook: the token audience must be set and its lifetime at least %s", roles.MinTokenExpiration)
	}
	if opts.CertCheckInterval <= 0 {
		opts.CertCheckInterval = 10 * time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	logger := opts.Logger.Named("webhook")
	certs, err := newCertReloader(opts.CertFile, opts.KeyFile, logger)
	if err != nil {
		return nil, err
	}
	m := NewMetrics(opts.Registry)
	sas := newServiceAccounts(opts.API, m)
	s := &Server{opts: opts, certs: certs, sas: sas, readyCh: make(chan struct{}), handler: &handler{
		resolve: newResolve(sas), settings: opts.Settings, metrics: m, logger: logger,
	}}
	if s.admit, err = net.Listen("tcp", opts.Listen); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		addr string
		to   *net.Listener
	}{{opts.HealthAddr, &s.health}, {opts.MetricsAddr, &s.metrics}} {
		if l.addr == "" {
			continue
		}
		if *l.to, err = net.Listen("tcp", l.addr); err != nil {
			s.closeListeners()
			return nil, err
		}
	}
	return s, nil
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.admit, s.health, s.metrics} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// Addr is the admission listener's address.
func (s *Server) Addr() net.Addr { return s.admit.Addr() }

// Ready is closed once the webhook answers with a synced informer.
func (s *Server) Ready() <-chan struct{} { return s.readyCh }

// HealthAddr is the health listener's address, or nil.
func (s *Server) HealthAddr() net.Addr {
	if s.health == nil {
		return nil
	}
	return s.health.Addr()
}

// Run serves until ctx ends, then drains for up to ShutdownTimeout. /readyz
// turns 200 once the ServiceAccount informer has synced.
func (s *Server) Run(ctx context.Context) error {
	logger := s.handler.logger
	// Everything started here has stopped when Run returns.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { s.certs.watch(ctx, s.opts.CertCheckInterval) })

	mux := http.NewServeMux()
	mux.Handle(Path, http.MaxBytesHandler(s.handler, MaxReviewBytes+1))
	admit := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.GetCertificate},
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: 90 * time.Second,
		ErrorLog: zap.NewStdLog(logger.Named("http")),
	}
	servers := []*http.Server{admit}
	errc := make(chan error, 3)
	go func() { errc <- admit.ServeTLS(s.admit, "", "") }()
	if s.health != nil {
		hs := &http.Server{Handler: s.healthMux(), ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, hs)
		go func() { errc <- hs.Serve(s.health) }()
	}
	if s.metrics != nil {
		mm := http.NewServeMux()
		mm.Handle("/metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{DisableCompression: true}))
		ms := &http.Server{Handler: mm, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, ms)
		go func() { errc <- ms.Serve(s.metrics) }()
	}
	logger.Info("serving", zap.Stringer("admission", s.admit.Addr()), zap.String("path", Path))

	syncErr := make(chan error, 1)
	wg.Go(func() { s.sas.informer.RunWithContext(ctx) })
	wg.Go(func() { syncErr <- s.sas.waitSynced(ctx) })
	var err error
	served := 0 // Serve calls that have returned
	select {
	case err = <-syncErr:
		if err == nil {
			s.ready.Store(true)
			close(s.readyCh)
			logger.Info("serviceaccount informer synced; ready")
			select {
			case <-ctx.Done():
			case err = <-errc:
				served++
			}
		}
	case err = <-errc:
		served++
	}
	s.draining.Store(true)
	stopped := ctx.Err() != nil
	sctx, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancelDrain()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	for ; served < len(servers); served++ {
		<-errc
	}
	cancel()
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !stopped {
		return err
	}
	return nil
}

func (s *Server) healthMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	m.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !s.ready.Load() || !s.sas.synced():
			http.Error(w, "serviceaccount informer not synced yet", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	return m
}

// newResolve is the role decision the webhook makes, on client's
// ServiceAccounts and namespaces. No answer is remembered (ttl 0): the
// webhook's informer is the cache, and a pod must see its ServiceAccount as
// it is now.
func newResolve(client roles.Client) func(ctx context.Context, p roles.Pod) error {
	resolver := roles.NewRoleResolver(client, clock.RealClock{}, 0, "sts.amazonaws.com", time.Hour, nil)
	return func(ctx context.Context, p roles.Pod) error {
		_, err := resolver.Resolve(ctx, p)
		return err
	}
}
