package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/agent/stack"
	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/netsetup"
	"github.com/podcreds/podcreds/oidc"
	"github.com/podcreds/podcreds/podevents"
	"github.com/podcreds/podcreds/tokenreq"
)

// run wires the agent from cfg and serves until ctx ends.
func run(ctx context.Context, cfg *Config) error {
	logger, err := newLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	build := currentBuild()
	logger.Info("podcreds agent", zap.String("version", build.Version), zap.String("commit", build.Commit),
		zap.String("goVersion", build.GoVersion))

	if cfg.LinkSetup {
		if err := setUpLink(ctx, cfg, logger); err != nil {
			return err
		}
	}

	restCfg, err := kubeConfig(cfg.Kubeconfig, cfg.KubeAPIQPS, cfg.KubeAPIBurst)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "podcreds/" + cfg.NodeName
	client, err := kube.New(restCfg)
	if err != nil {
		return err
	}

	var verifier agent.Verifier
	if cfg.TokenVerification != string(agent.TokenOff) {
		v, err := newVerifier(ctx, cfg, restCfg, client, logger)
		if err != nil {
			return err
		}
		verifier = v
	}

	var nodes kube.NodeTaints
	if cfg.StartupTaint != "" {
		if nodes, err = kube.NewNodeTaints(restCfg); err != nil {
			return err
		}
	}

	var imdsKey *[agent.IMDSKeySize]byte
	if cfg.IMDSKeyFile != "" && len(cfg.IMDSListen) > 0 {
		if imdsKey, err = agent.LoadIMDSKey(cfg.IMDSKeyFile); err != nil {
			return err
		}
	}

	// Events on pods, written through the agent's own connection settings
	// (the same QPS and burst, in a client of their own).
	var events eventsv1client.EventsV1Interface
	if cfg.EventInterval > 0 {
		if events, err = podevents.NewClient(restCfg); err != nil {
			return err
		}
	}

	var listeners []agent.Listener
	for _, a := range cfg.Listen {
		listeners = append(listeners, agent.Listener{Addr: a})
	}
	for _, a := range cfg.ECSListen {
		listeners = append(listeners, agent.Listener{Addr: a, AnyPath: true})
	}
	reg := prometheus.NewRegistry()
	metrics.RegisterProcess(reg, metrics.Build{Version: build.Version, Commit: build.Commit, GoVersion: build.GoVersion})
	st, err := stack.Build(stack.Options{
		Client: client, STS: tokenreq.NewSTSClient(cfg.STSRegion, cfg.STSEndpoint, nil),
		SessionDuration: cfg.CredentialDuration, ClusterName: cfg.ClusterName, Logger: logger, Registry: reg,
		STSRate: cfg.STSRate, STSBurst: cfg.STSBurst,
		Events: events, EventInterval: cfg.EventInterval, EventUnavailableAfter: cfg.EventUnavailableAfter,
		Cache: cache.Options{RefreshFraction: cfg.RefreshFraction, RefreshBefore: cfg.RefreshBefore, MaxWait: cfg.MaxFetchWait},
		Agent: agent.Options{
			NodeName: cfg.NodeName, Listeners: listeners,
			IMDSListeners: cfg.IMDSListen, IMDSTokenMode: agent.IMDSTokenMode(cfg.IMDSTokens), IMDSKey: imdsKey,
			IMDSRegion: cfg.IMDSRegion, IMDSAvailabilityZone: cfg.IMDSAvailabilityZone,
			HealthAddr: cfg.HealthListen, MetricsAddr: cfg.MetricsListen, HealthSocket: cfg.HealthSocket,
			CredentialsPath: cfg.CredentialsPath, DefaultAudience: cfg.Audience, DefaultTokenExpiration: cfg.TokenExpiration,
			AllowedAccounts: cfg.AllowedAccounts,
			TokenMode:       agent.TokenMode(cfg.TokenVerification), Verifier: verifier,
			RateLimit: rateLimit(cfg.RateLimit), RateBurst: cfg.RateBurst, MaxConnections: cfg.MaxConnections,
			MaxConnectionsPerAddress: cfg.MaxConnsPerAddress,
			UnknownPodWait:           cfg.UnknownPodWait, ServiceAccountTTL: cfg.ServiceAccountTTL, ShutdownTimeout: cfg.ShutdownTimeout,
			DrainDelay: drainDelay(cfg.DrainDelay), WarmTimeout: cfg.WarmTimeout,
			StartupTaint: cfg.StartupTaint, Nodes: nodes,
		},
	})
	if err != nil {
		return err
	}
	defer st.Close()
	a := st.Agent
	eventsCtx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEvents() // once the agent has stopped; Events still being written are abandoned
	go st.Events.Run(eventsCtx)
	logger.Info("starting", zap.String("node", cfg.NodeName), zap.String("stsRegion", cfg.STSRegion),
		zap.String("stsEndpoint", cfg.STSEndpoint), zap.Duration("credentialDuration", cfg.CredentialDuration))
	err = a.Run(ctx)
	logger.Info("stopped", zap.Error(err))
	return err
}

// newVerifier builds the presented-token verifier. Without --pod-token-issuer it
// asks the API server for its issuer; when the issuer is the API server
// itself, discovery goes through the agent's own authenticated connection
// (trusting the cluster CA), otherwise through the system's roots.
func newVerifier(ctx context.Context, cfg *Config, restCfg *rest.Config, client kube.Client, logger *zap.Logger) (*oidc.Verifier, error) {
	issuer := cfg.TokenIssuer
	if issuer == "" {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		raw, err := client.GetRaw(cctx, "/.well-known/openid-configuration")
		if err != nil {
			return nil, fmt.Errorf("discovering the ServiceAccount token issuer from the API server (set -pod-token-issuer, or -pod-token-verification=off): %w", err)
		}
		var doc struct {
			Issuer string `json:"issuer"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil || doc.Issuer == "" {
			return nil, fmt.Errorf("the API server's OIDC discovery document names no issuer (set -pod-token-issuer, or -pod-token-verification=off)")
		}
		issuer = doc.Issuer
	}
	httpClient := &http.Client{Timeout: 15 * time.Second}
	if iu, err := url.Parse(issuer); err == nil {
		if hu, err := url.Parse(restCfg.Host); err == nil && iu.Host == hu.Host {
			if httpClient, err = rest.HTTPClientFor(restCfg); err != nil {
				return nil, err
			}
		}
	}
	logger.Info("verifying presented ServiceAccount tokens", zap.String("mode", cfg.TokenVerification),
		zap.String("issuer", issuer), zap.String("audience", cfg.TokenAudience))
	return oidc.New(oidc.Options{Issuer: issuer, Audience: cfg.TokenAudience, HTTPClient: httpClient, Logger: logger})
}

// setUpLink runs -link-setup before anything binds: the node gets the
// addresses the agent listens on, pods' IMDS traffic is redirected to it,
// and each source's connections to it are capped in the kernel (a kernel
// that cannot is logged, not fatal: the agent's own cap still holds).
// On a node without IPv6 it drops the default IPv6 listen address, which
// could not be bound. Nothing is undone on exit: the redirect stays while no
// agent runs, so pods never reach the node's real IMDS because the agent is
// restarting, upgrading or has crashed (their requests are refused by the
// node's kernel instead). `podcreds uninstall-node` removes it.
func setUpLink(ctx context.Context, cfg *Config, logger *zap.Logger) error {
	opts, err := cfg.linkOptions()
	if err != nil {
		return err
	}
	res, err := netsetup.Ensure(ctx, opts)
	if err != nil {
		return err
	}
	logger.Info("link setup", zap.String("interface", res.Interface), zap.String("kind", res.Kind),
		zap.Bool("created", res.Created), zap.Stringers("addresses", res.Addresses),
		zap.Stringers("added", res.Added), zap.Stringers("removed", res.Removed), zap.Strings("imdsRules", res.IMDSRules),
		zap.Strings("connCapRules", res.ConnCapRules))
	if res.ConnCapErr != nil {
		logger.Warn("connections past -max-connections-per-address are refused by the agent alone, after each is accepted", zap.Error(res.ConnCapErr))
	}
	// Upgrades run two agents side by side; the one leaving hands its
	// queued connections to the other only with request migration on.
	if changed, err := netsetup.EnableRequestMigration(); err != nil {
		logger.Warn("connections queued on an agent that leaves during an upgrade will be reset", zap.Error(err))
	} else if changed {
		logger.Info("set net.ipv4.tcp_migrate_req=1: queued connections move to the new agent during upgrades")
	}
	if res.Kind != "dummy" {
		logger.Warn("the kernel has no dummy interface driver; the addresses are on an ifb device instead", zap.String("interface", res.Interface))
	}
	if !netsetup.IPv6Enabled() {
		v6 := netsetup.ContainerAddrV6.Addr()
		cfg.Listen = slices.DeleteFunc(cfg.Listen, func(a string) bool {
			ap, err := netip.ParseAddrPort(a)
			return err == nil && ap.Addr() == v6
		})
		logger.Info("IPv6 is off on this node: not listening on its IPv6 address", zap.Stringer("address", v6))
	}
	return nil
}

// defaultHealthSocket is where the DaemonSet's agent serves its health
// checks for `podcreds probe` (an emptyDir of its own pod).
const defaultHealthSocket = "/run/podcreds/health.sock"

// drainDelay maps the flag's "0 disables" to the agent's "negative disables".
func drainDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// rateLimit maps the flag's "0 disables" to the agent's "negative disables".
func rateLimit(perSecond float64) float64 {
	if perSecond == 0 {
		return -1
	}
	return perSecond
}

func kubeConfig(path string, qps float64, burst int) (*rest.Config, error) {
	var c *rest.Config
	var err error
	if path != "" {
		c, err = clientcmd.BuildConfigFromFlags("", path)
	} else {
		c, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	// Steady state is one watch and a trickle of TokenRequests; bursts come
	// from many pods starting at once, or an agent restarting onto them.
	c.QPS, c.Burst = float32(qps), burst
	return c, nil
}

func newLogger(cfg *Config) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	if cfg.LogFormat == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
	}
	zc.Level = zap.NewAtomicLevelAt(cfg.LogLevel)
	zc.DisableStacktrace = cfg.LogLevel > zap.DebugLevel
	l, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("logger: %w", err)
	}
	return l.Named("podcreds"), nil
}
