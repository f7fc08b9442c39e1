package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
	"github.com/podcreds/podcreds/webhook"
)

// WebhookConfig is everything `podcreds webhook` is told.
type WebhookConfig struct {
	Kubeconfig        string
	Listen            string
	TLSCertFile       string
	TLSKeyFile        string
	CertCheckInterval time.Duration
	HealthListen      string
	MetricsListen     string
	Endpoint          string
	TokenAudience     string
	TokenExpiration   time.Duration
	Region            string
	KubeAPIQPS        float64
	KubeAPIBurst      int
	ShutdownTimeout   time.Duration
	LogLevel          zapcore.Level
	LogFormat         string
}

// parseWebhookConfig reads flags, then PODCREDS_<FLAG> for any flag not
// given (KUBECONFIG too), and validates.
func parseWebhookConfig(args []string, getenv func(string) string) (*WebhookConfig, error) {
	c := &WebhookConfig{}
	fs := flag.NewFlagSet("podcreds webhook", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster (env KUBECONFIG)")
	fs.StringVar(&c.Listen, "listen", ":8443", "HTTPS address the API server calls ("+webhook.Path+")")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", "/etc/podcreds/tls/tls.crt", "serving certificate (PEM), reloaded when it changes (a cert-manager Secret mounted here)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", "/etc/podcreds/tls/tls.key", "serving certificate's private key (PEM)")
	fs.DurationVar(&c.CertCheckInterval, "cert-check-interval", 10*time.Second, "how often the certificate files are checked for a change")
	fs.StringVar(&c.HealthListen, "health-listen", ":8090", "address for /healthz and /readyz (plain HTTP); empty disables")
	fs.StringVar(&c.MetricsListen, "metrics-listen", ":8091", "address for /metrics; empty disables")
	fs.StringVar(&c.Endpoint, "endpoint", "/v1/credentials",
		"credentials endpoint injected: a path becomes AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (169.254.170.2, which every SDK generation accepts), "+
			"an http URL on 169.254.170.2, 169.254.170.23 or [fd00:ec2::23] becomes AWS_CONTAINER_CREDENTIALS_FULL_URI; a pod's "+webhook.EndpointAnnotation+" annotation overrides it")
	fs.StringVar(&c.TokenAudience, "token-audience", "podcreds", "audience of the injected projected token (the agent's --token-audience)")
	fs.DurationVar(&c.TokenExpiration, "token-expiration", time.Hour, "lifetime of the injected projected token (min 10m); the kubelet refreshes it past 80 %")
	fs.StringVar(&c.Region, "region", "", "if set, injected as AWS_REGION and AWS_DEFAULT_REGION where a container sets neither")
	fs.Float64Var(&c.KubeAPIQPS, "kube-api-qps", 50, "Kubernetes API requests per second (live ServiceAccount reads)")
	fs.IntVar(&c.KubeAPIBurst, "kube-api-burst", 100, "burst of Kubernetes API requests")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to drain requests on SIGTERM")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or console")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := flagsFromEnv(fs, getenv, map[string]string{"kubeconfig": "KUBECONFIG"}); err != nil {
		return nil, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	return c, c.validate()
}

// flagsFromEnv sets every flag not given from PODCREDS_<FLAG> (dashes as
// underscores) or its conventional variable.
func flagsFromEnv(fs *flag.FlagSet, getenv func(string) string, conventional map[string]string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := "PODCREDS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(env)
		if v == "" && conventional[f.Name] != "" {
			env = conventional[f.Name]
			v = getenv(env)
		}
		if v == "" {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
		}
	})
	return errors.Join(errs...)
}

func (c *WebhookConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("-listen %q: %v", c.Listen, err)
	}
	for name, a := range map[string]string{"-health-listen": c.HealthListen, "-metrics-listen": c.MetricsListen} {
		if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
			bad("%s %q: %v", name, a, err)
		}
	}
	if c.TLSCertFile == "" || c.TLSKeyFile == "" {
		bad("-tls-cert-file and -tls-key-file are required: the API server calls webhooks over HTTPS only")
	}
	if c.CertCheckInterval <= 0 {
		bad("-cert-check-interval must be positive")
	}
	if _, err := webhook.ParseEndpoint(c.Endpoint); err != nil {
		bad("-endpoint: %v", err)
	}
	if c.TokenAudience == "" {
		bad("-token-audience must not be empty")
	}
	if c.TokenExpiration < roles.MinTokenExpiration || c.TokenExpiration > 48*time.Hour || c.TokenExpiration%time.Second != 0 {
		bad("-token-expiration %s must be whole seconds from %s to 48h", c.TokenExpiration, roles.MinTokenExpiration)
	}
	if strings.ContainsAny(c.Region, " \t\n\"'") {
		bad("-region %q is not a region name", c.Region)
	}
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst < 1 {
		bad("-kube-api-qps must be positive and -kube-api-burst at least 1")
	}
	if c.ShutdownTimeout <= 0 {
		bad("-shutdown-timeout must be positive")
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("-log-format %q must be json or console", c.LogFormat)
	}
	return errors.Join(errs...)
}

// webhookMain runs `podcreds webhook`.
func webhookMain(args []string) int {
	cfg, err := parseWebhookConfig(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds webhook: invalid configuration:\n%v\n", err)
		return 2
	}
	logger, err := newLogger(&Config{LogLevel: cfg.LogLevel, LogFormat: cfg.LogFormat})
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds webhook: %v\n", err)
		return 1
	}
	defer func() { _ = logger.Sync() }()
	if err := runWebhook(cfg, logger); err != nil {
		logger.Error("stopped", zap.Error(err))
		fmt.Fprintf(os.Stderr, "podcreds webhook: %v\n", err)
		return 1
	}
	return 0
}

func runWebhook(cfg *WebhookConfig, logger *zap.Logger) error {
	restCfg, err := kubeConfig(cfg.Kubeconfig, cfg.KubeAPIQPS, cfg.KubeAPIBurst)
	if err != nil {
		return err
	}
	restCfg.UserAgent = "podcreds-webhook"
	api, err := kube.NewServiceAccounts(restCfg)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := webhook.New(webhook.Options{
		API: api, Listen: cfg.Listen, CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, CertCheckInterval: cfg.CertCheckInterval,
		HealthAddr: cfg.HealthListen, MetricsAddr: cfg.MetricsListen, Registry: reg, Logger: logger, ShutdownTimeout: cfg.ShutdownTimeout,
		Settings: webhook.Settings{Endpoint: cfg.Endpoint, TokenAudience: cfg.TokenAudience, TokenExpiration: cfg.TokenExpiration, Region: cfg.Region},
	})
	if err != nil {
		return err
	}
	return srv.Run(signalContext())
}
