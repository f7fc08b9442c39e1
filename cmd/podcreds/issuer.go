package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/kubernetes/scheme"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"

	"github.com/podcreds/podcreds/issuer"
	"github.com/podcreds/podcreds/metrics"
)

// IssuerConfig is everything `podcreds issuer` (and `issuer publish`) is told.
type IssuerConfig struct {
	PublicURL  string
	Kubeconfig string

	Dir                  string // directory target
	Bucket, Prefix       string // S3 target
	S3Region, S3Endpoint string
	S3PathStyle          bool

	Overlap  time.Duration
	Interval time.Duration
	Once     bool // issuer publish --once

	LeaseNamespace, LeaseName, Identity       string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	HealthListen, MetricsListen               string

	LogLevel  zapcore.Level
	LogFormat string
}

// issuerMain runs `podcreds issuer [publish [--once]] [flags]`.
func issuerMain(args []string) int {
	publish := len(args) > 0 && args[0] == "publish"
	if publish {
		args = args[1:]
	}
	cfg, err := parseIssuerConfig(args, publish, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds issuer: invalid configuration:\n%v\n", err)
		return 2
	}
	ctx := signalContext()
	if publish {
		err = runPublish(ctx, cfg)
	} else {
		err = runIssuer(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "podcreds issuer: %v\n", err)
		return 1
	}
	return 0
}

func parseIssuerConfig(args []string, publish bool, getenv func(string) string) (*IssuerConfig, error) {
	c := &IssuerConfig{}
	name := "podcreds issuer"
	if publish {
		name += " publish"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s [flags]\n\n", name)
		if publish {
			fmt.Fprint(fs.Output(), "Publishes the API server's OIDC discovery document and JWKS; with --once, one sync and exit\n(the bootstrap from an admin machine), otherwise every --interval without leader election.\n\n")
		} else {
			fmt.Fprint(fs.Output(), "Keeps the API server's OIDC discovery document and JWKS published, as the leader of\nthe replicas sharing --lease-name. \"podcreds issuer publish --once\" publishes once.\n\n")
		}
		fs.PrintDefaults()
	}
	fs.StringVar(&c.PublicURL, "public-url", "", "the issuer's public https URL: the API server's --service-account-issuer, where AWS fetches discovery (required)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster (env KUBECONFIG)")
	fs.StringVar(&c.Dir, "dir", "", "publish to this directory (served by your own web server); exclusive with --bucket")
	fs.StringVar(&c.Bucket, "bucket", "", "publish to this S3 bucket (credentials from the default chain); exclusive with --dir")
	fs.StringVar(&c.Prefix, "prefix", "", "key prefix in --bucket (the issuer URL's path below the bucket)")
	fs.StringVar(&c.S3Region, "s3-region", "", "the bucket's region (env AWS_REGION)")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "S3 endpoint URL override (S3-compatible stores); empty: the region's default")
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", false, "address the bucket path-style (https://host/bucket/key), as S3-compatible stores need")
	fs.DurationVar(&c.Overlap, "overlap", issuer.DefaultOverlap, "how long a key stays published after the API server stops serving it: the longest token lifetime plus the relying party's JWKS cache time")
	interval := "how often to compare and publish"
	if !publish {
		interval += " (SIGHUP: at once)"
	}
	fs.DurationVar(&c.Interval, "interval", time.Minute, interval)
	if publish {
		fs.BoolVar(&c.Once, "once", false, "publish once and exit (non-zero on failure)")
	} else {
		fs.StringVar(&c.LeaseNamespace, "lease-namespace", "podcreds-system", "namespace of the Lease the replicas elect a leader with (env POD_NAMESPACE)")
		fs.StringVar(&c.LeaseName, "lease-name", "podcreds-issuer", "name of that Lease")
		fs.StringVar(&c.Identity, "identity", "", "this replica's name in the Lease (env POD_NAME; default the hostname)")
		fs.DurationVar(&c.LeaseDuration, "lease-duration", 15*time.Second, "how long a standby waits after the leader's last renewal before taking over")
		fs.DurationVar(&c.RenewDeadline, "renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it stops publishing")
		fs.DurationVar(&c.RetryPeriod, "retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
		fs.StringVar(&c.HealthListen, "health-listen", ":8090", "address for /healthz and /readyz")
		fs.StringVar(&c.MetricsListen, "metrics-listen", ":8091", "address for /metrics; empty disables")
	}
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or console")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := flagsFromEnv(fs, getenv, map[string]string{"kubeconfig": "KUBECONFIG", "s3-region": "AWS_REGION", "lease-namespace": "POD_NAMESPACE", "identity": "POD_NAME"}); err != nil {
		return nil, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	if c.Identity == "" && !publish {
		c.Identity, _ = os.Hostname()
	}
	return c, c.validate(publish)
}

func (c *IssuerConfig) validate(publish bool) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.PublicURL == "" {
		bad("-public-url is required: the issuer URL AWS fetches (kube-apiserver's --service-account-issuer)")
	} else if _, err := issuer.CheckPublicURL(c.PublicURL); err != nil {
		bad("-public-url: %v", err)
	}
	switch {
	case c.Dir == "" && c.Bucket == "":
		bad("give -bucket (S3) or -dir (a directory your web server serves)")
	case c.Dir != "" && c.Bucket != "":
		bad("-bucket and -dir are exclusive")
	}
	if c.Bucket != "" && c.S3Region == "" {
		bad("-s3-region (or AWS_REGION) is required with -bucket")
	}
	if c.Overlap <= 0 {
		bad("-overlap must be positive")
	}
	if c.Interval <= 0 {
		bad("-interval must be positive")
	}
	if !publish {
		if c.Identity == "" {
			bad("-identity (or POD_NAME) must not be empty")
		}
		if !(c.LeaseDuration > c.RenewDeadline && c.RenewDeadline > c.RetryPeriod && c.RetryPeriod > 0) {
			bad("need -lease-duration > -renew-deadline > -retry-period > 0")
		}
		for name, a := range map[string]string{"-health-listen": c.HealthListen, "-metrics-listen": c.MetricsListen} {
			if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
				bad("%s %q: %v", name, a, err)
			}
		}
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("-log-format %q must be json or console", c.LogFormat)
	}
	return errors.Join(errs...)
}

// newPublisher wires a Publisher to the API server and the target.
func newPublisher(ctx context.Context, cfg *IssuerConfig, logger *zap.Logger, m *metrics.Issuer) (*issuer.Publisher, *kubeParts, error) {
	restCfg, err := kubeConfig(cfg.Kubeconfig, 5, 10)
	if err != nil {
		return nil, nil, err
	}
	restCfg.UserAgent = "podcreds-issuer"
	hc, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		return nil, nil, err
	}
	client := &issuer.APIServerSource{Client: hc, Host: restCfg.Host}
	var target issuer.Target
	if cfg.Dir != "" {
		if target, err = issuer.NewDirTarget(cfg.Dir); err != nil {
			return nil, nil, err
		}
	} else {
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.S3Region))
		if err != nil {
			return nil, nil, fmt.Errorf("AWS configuration for S3: %w", err)
		}
		s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
			if cfg.S3Endpoint != "" {
				o.BaseEndpoint = aws.String(cfg.S3Endpoint)
			}
			o.UsePathStyle = cfg.S3PathStyle
		})
		if target, err = issuer.NewS3Target(s3c, cfg.Bucket, cfg.Prefix); err != nil {
			return nil, nil, err
		}
	}
	p, err := issuer.New(issuer.Options{PublicURL: cfg.PublicURL, Source: client, Target: target, Overlap: cfg.Overlap, Logger: logger, Metrics: m})
	if err != nil {
		return nil, nil, err
	}
	leases, err := coordinationv1client.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, err
	}
	ev, err := eventsv1client.NewForConfig(restCfg)
	if err != nil {
		return nil, nil, err
	}
	return p, &kubeParts{leases: leases, events: ev}, nil
}

type kubeParts struct {
	leases *coordinationv1client.CoordinationV1Client
	events *eventsv1client.EventsV1Client
}

func issuerLogger(cfg *IssuerConfig) (*zap.Logger, error) {
	l, err := newLogger(&Config{LogLevel: cfg.LogLevel, LogFormat: cfg.LogFormat})
	if err != nil {
		return nil, err
	}
	return l.Named("issuer"), nil
}

// runPublish is `issuer publish`: one sync with --once, else a loop.
func runPublish(ctx context.Context, cfg *IssuerConfig) error {
	logger, err := issuerLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	p, _, err := newPublisher(ctx, cfg, logger, nil)
	if err != nil {
		return err
	}
	for {
		res, err := p.Sync(ctx)
		if err != nil {
			if cfg.Once {
				return err
			}
			logger.Error("publish failed", zap.Error(err))
		} else if cfg.Once {
			fmt.Printf("published %s: keys %v, written %v, dropped %v\n", cfg.PublicURL, res.Keys, nonNil(res.Written), nonNil(res.Dropped))
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.Interval):
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// runIssuer is `podcreds issuer`: the leader-elected controller.
func runIssuer(ctx context.Context, cfg *IssuerConfig) error {
	logger, err := issuerLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.NewIssuer(reg, time.Now)
	p, kp, err := newPublisher(ctx, cfg, logger, m)
	if err != nil {
		return err
	}
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: kp.events})
	broadcaster.StartRecordingToSink(ctx.Done())
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, "podcreds-issuer")

	trigger := make(chan struct{}, 1)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case trigger <- struct{}{}:
				default:
				}
			}
		}
	}()
	ctrl, err := issuer.NewController(issuer.ControllerOptions{
		Publisher: p, Interval: cfg.Interval, Trigger: trigger,
		Leases: kp.leases, LeaseNamespace: cfg.LeaseNamespace, LeaseName: cfg.LeaseName, Identity: cfg.Identity,
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		Recorder: recorder, Logger: logger, Metrics: m,
	})
	if err != nil {
		return err
	}

	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	health.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ctrl.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	servers := []*http.Server{{Addr: cfg.HealthListen, Handler: health, ReadHeaderTimeout: 5 * time.Second}}
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		servers = append(servers, &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	for _, s := range servers {
		l, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return err
		}
		logger.Info("listening", zap.String("addr", l.Addr().String()))
		go func() { _ = s.Serve(l) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Shutdown(sctx)
		}()
	}
	logger.Info("starting", zap.String("publicURL", cfg.PublicURL), zap.String("identity", cfg.Identity),
		zap.String("lease", cfg.LeaseNamespace+"/"+cfg.LeaseName))
	return ctrl.Run(ctx)
}
