package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/netsetup"
	"github.com/podcreds/podcreds/podevents"
	"github.com/podcreds/podcreds/roles"
	"github.com/podcreds/podcreds/tokenreq"
)

// Config is everything `podcreds agent` is told, parsed and validated once.
type Config struct {
	NodeName   string
	Kubeconfig string // empty: in-cluster

	Listen          []string // container endpoint, configured path only
	ECSListen       []string // ECS address: every path (RELATIVE_URI)
	CredentialsPath string
	HealthListen    string
	MetricsListen   string

	IMDSListen           []string // opt-in IMDS-compatible endpoint
	IMDSTokens           string   // required or optional
	IMDSRegion           string   // placement/region; default: STSRegion
	IMDSAvailabilityZone string

	STSRegion    string
	STSEndpoint  string
	STSRate      float64
	STSBurst     int
	MaxFetchWait time.Duration
	// KubeAPIQPS and KubeAPIBurst limit the agent's own Kubernetes API
	// requests (TokenRequests, ServiceAccount reads), as the kubelet's
	// flags of the same names do.
	KubeAPIQPS   float64
	KubeAPIBurst int

	Audience           string
	TokenVerification  string
	TokenAudience      string
	TokenIssuer        string
	TokenExpiration    time.Duration
	CredentialDuration time.Duration
	// ClusterName is the kubernetes-cluster session tag of second hops.
	ClusterName       string
	RefreshFraction   float64
	RefreshBefore     time.Duration
	UnknownPodWait    time.Duration
	ServiceAccountTTL time.Duration
	ShutdownTimeout   time.Duration
	// EventInterval is the least time between two Events of one reason on
	// one pod; 0 disables Events. EventUnavailableAfter is how long a pod
	// goes without credentials before it gets a CredentialsUnavailable Event.
	EventInterval         time.Duration
	EventUnavailableAfter time.Duration
	RateLimit             float64
	AllowedAccounts       []string
	RateBurst             int
	MaxConnections        int

	LogLevel  zapcore.Level
	LogFormat string

	LinkSetup         bool     // create the listen addresses (and the IMDS redirect) at start
	LinkInterface     string   // the interface that carries them
	LinkPodInterfaces []string // pods' node-side interface names, for the IMDS redirect
}

// listFlag is a repeatable flag; the first explicit use replaces the default.
type listFlag struct {
	values *[]string
	set    bool
}

func (l *listFlag) String() string {
	if l.values == nil {
		return ""
	}
	return strings.Join(*l.values, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.values, l.set = nil, true
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.values = append(*l.values, s)
		}
	}
	return nil
}

// parseConfig reads flags, then the environment for any flag not given:
// PODCREDS_<FLAG> (dashes as underscores), plus the conventional NODE_NAME,
// KUBECONFIG and AWS_REGION that a DaemonSet sets.
func parseConfig(args []string, getenv func(string) string) (*Config, error) {
	c := &Config{
		Listen:    []string{"169.254.170.23:80", "[fd00:ec2::23]:80"},
		ECSListen: []string{"169.254.170.2:80"},

		LinkPodInterfaces: slices.Clone(netsetup.DefaultPodInterfaces),
	}
	fs := flag.NewFlagSet("podcreds agent", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&c.NodeName, "node-name", "", "this node's name, as in spec.nodeName (env NODE_NAME)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster (env KUBECONFIG)")
	fs.Var(&listFlag{values: &c.Listen}, "listen", "container-credentials listen address, repeatable (AWS_CONTAINER_CREDENTIALS_FULL_URI)")
	fs.Var(&listFlag{values: &c.ECSListen}, "ecs-listen", "listen address that serves credentials on every path, repeatable (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on 169.254.170.2); \"none\" disables")
	fs.StringVar(&c.CredentialsPath, "credentials-path", "/v1/credentials", "path of the credentials endpoint on --listen addresses")
	fs.StringVar(&c.HealthListen, "health-listen", "127.0.0.1:8090", "address for /healthz and /readyz")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:8091", "address for /metrics; empty disables")
	fs.Var(&listFlag{values: &c.IMDSListen}, "imds-listen", "IMDS-compatible endpoint listen address, repeatable; off unless set (production: 169.254.169.254:80)")
	fs.StringVar(&c.IMDSTokens, "imds-tokens", "required", "IMDS session tokens: required (IMDSv2 only) or optional (IMDSv1 allowed)")
	fs.StringVar(&c.IMDSRegion, "imds-region", "", "region IMDS reports in placement/region; empty: --sts-region")
	fs.StringVar(&c.IMDSAvailabilityZone, "imds-availability-zone", "", "availability zone IMDS reports in placement/availability-zone; empty: 404")
	fs.StringVar(&c.STSRegion, "sts-region", "us-east-1", "STS region (env AWS_REGION)")
	fs.StringVar(&c.STSEndpoint, "sts-endpoint", "", "STS endpoint URL override (VPC endpoint, MinIO); empty: the region's default")
	fs.Float64Var(&c.STSRate, "sts-rate", 20, "this node's STS calls per second at most (halved while STS throttles, recovering on success); 0: no cap")
	fs.IntVar(&c.STSBurst, "sts-burst", 50, "burst of STS calls allowed (a node starting many pods at once)")
	fs.Float64Var(&c.KubeAPIQPS, "kube-api-qps", 50, "Kubernetes API requests per second from this agent (TokenRequests, ServiceAccount reads; the kubelet's default)")
	fs.IntVar(&c.KubeAPIBurst, "kube-api-burst", 100, "burst of Kubernetes API requests (a node starting or an agent restarting onto many ServiceAccounts)")
	fs.DurationVar(&c.MaxFetchWait, "max-fetch-wait", 800*time.Millisecond, "longest a request waits for a fetch before a 503 asking it to retry (the fetch continues); SDKs time out after about 1s")
	fs.StringVar(&c.Audience, "audience", "sts.amazonaws.com", "ServiceAccount token audience when the ServiceAccount does not set eks.amazonaws.com/audience")
	fs.StringVar(&c.TokenVerification, "token-verification", "if-present", "check of a pod's projected token in Authorization on the container endpoints: off, if-present or required (the IMDS endpoint, whose clients send no such token, is always identified by source address alone)")
	fs.StringVar(&c.TokenAudience, "token-audience", "podcreds", "audience a pod's presented token must carry")
	fs.StringVar(&c.TokenIssuer, "token-issuer", "", "ServiceAccount token issuer (https URL) whose OIDC discovery verifies presented tokens; empty: ask the API server")
	fs.DurationVar(&c.TokenExpiration, "token-expiration", time.Hour, "ServiceAccount token lifetime when the ServiceAccount does not set eks.amazonaws.com/token-expiration (min 10m)")
	fs.StringVar(&c.ClusterName, "cluster-name", "", "value of the kubernetes-cluster session tag on chained sessions (a ServiceAccount's podcreds.io/target-role-arn); empty: no cluster tag")
	fs.DurationVar(&c.CredentialDuration, "credential-duration", time.Hour, "lifetime asked of STS for credentials (15m to 12h); a role whose MaxSessionDuration is shorter gets 1h")
	fs.Float64Var(&c.RefreshFraction, "refresh-fraction", cache.DefaultRefreshFraction, "refresh credentials after this fraction of their lifetime (with jitter)")
	fs.DurationVar(&c.RefreshBefore, "refresh-before", cache.DefaultRefreshBefore, "refresh no later than when this much lifetime is left")
	fs.DurationVar(&c.UnknownPodWait, "unknown-pod-wait", time.Second, "how long a request from an unknown address waits for the pod to appear before one API lookup")
	fs.DurationVar(&c.ServiceAccountTTL, "serviceaccount-ttl", 30*time.Second, "how long a ServiceAccount's role annotation is remembered")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to drain requests on SIGTERM")
	fs.DurationVar(&c.EventInterval, "event-interval", podevents.DefaultInterval, "least time between two Kubernetes Events of one reason on one pod (a refusal, STS denying it, credentials unavailable); 0 disables Events")
	fs.DurationVar(&c.EventUnavailableAfter, "event-unavailable-after", podevents.DefaultUnavailableAfter, "how long a pod's requests fail retriably (STS down or throttling) before it gets a CredentialsUnavailable Event")
	fs.Var(&listFlag{values: &c.AllowedAccounts}, "allowed-accounts", "AWS account IDs whose roles may be served, repeatable or comma-separated; empty: any")
	fs.Float64Var(&c.RateLimit, "rate-limit", 50, "requests per second allowed from one source address (429 beyond); 0 disables")
	fs.IntVar(&c.RateBurst, "rate-burst", 100, "burst allowed from one source address")
	fs.IntVar(&c.MaxConnections, "max-connections", 1024, "concurrent connections per listener")
	fs.BoolVar(&c.LinkSetup, "link-setup", false, "at start, create the interface carrying 169.254.170.23, 169.254.170.2 and fd00:ec2::23 (IPv6 nodes) and, with -imds-listen, redirect pods' 169.254.169.254:80 there; both stay when the agent exits, so pods never reach the node's real IMDS while it is down ('podcreds uninstall-node' removes them; needs CAP_NET_ADMIN)")
	fs.StringVar(&c.LinkInterface, "link-interface", netsetup.DefaultInterface, "the dummy interface -link-setup creates")
	fs.Var(&listFlag{values: &c.LinkPodInterfaces}, "link-pod-interfaces", "node-side interface names of pods whose IMDS traffic -link-setup redirects, repeatable or comma-separated; a trailing + matches any suffix")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or console")

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	conventional := map[string]string{"node-name": "NODE_NAME", "kubeconfig": "KUBECONFIG", "sts-region": "AWS_REGION"}
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
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := c.LogLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	if len(c.ECSListen) == 1 && c.ECSListen[0] == "none" {
		c.ECSListen = nil
	}
	if c.IMDSRegion == "" {
		c.IMDSRegion = c.STSRegion
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeName == "" {
		bad("-node-name (or NODE_NAME) is required: the agent serves only the pods of its own node")
	}
	if len(c.Listen)+len(c.ECSListen) == 0 {
		bad("at least one -listen or -ecs-listen address is required")
	}
	for _, a := range append(append(append([]string{}, c.Listen...), c.ECSListen...), c.IMDSListen...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("listen address %q: %v", a, err)
		}
	}
	for name, a := range map[string]string{"-health-listen": c.HealthListen, "-metrics-listen": c.MetricsListen} {
		if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
			bad("%s %q: %v", name, a, err)
		}
	}
	if !strings.HasPrefix(c.CredentialsPath, "/") {
		bad("-credentials-path %q must start with /", c.CredentialsPath)
	}
	if c.STSRegion == "" {
		bad("-sts-region must not be empty")
	}
	if c.STSEndpoint != "" {
		if u, err := url.Parse(c.STSEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("-sts-endpoint %q must be an http(s) URL", c.STSEndpoint)
		}
	}
	if c.STSRate < 0 || (c.STSRate > 0 && c.STSBurst < 1) {
		bad("-sts-rate must be 0 (no cap) or positive with -sts-burst at least 1")
	}
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst < 1 {
		bad("-kube-api-qps must be positive and -kube-api-burst at least 1")
	}
	if c.MaxFetchWait < 0 {
		bad("-max-fetch-wait must not be negative")
	}
	if c.Audience == "" {
		bad("-audience must not be empty")
	}
	if c.TokenExpiration < roles.MinTokenExpiration {
		bad("-token-expiration %s is below the TokenRequest minimum of %s", c.TokenExpiration, roles.MinTokenExpiration)
	}
	if c.CredentialDuration < tokenreq.MinSessionDuration || c.CredentialDuration > tokenreq.MaxSessionDuration || c.CredentialDuration%time.Second != 0 {
		bad("-credential-duration %s must be whole seconds from %s to %s", c.CredentialDuration, tokenreq.MinSessionDuration, tokenreq.MaxSessionDuration)
	}
	if c.RefreshFraction <= 0 || c.RefreshFraction >= 1 {
		bad("-refresh-fraction %v must be between 0 and 1", c.RefreshFraction)
	}
	if c.RefreshBefore < 0 || c.RefreshBefore >= c.CredentialDuration {
		bad("-refresh-before %s must be less than -credential-duration %s", c.RefreshBefore, c.CredentialDuration)
	}
	if c.UnknownPodWait < 0 || c.UnknownPodWait > 30*time.Second {
		bad("-unknown-pod-wait %s must be between 0 and 30s (SDKs time out after 1–5s)", c.UnknownPodWait)
	}
	if c.ServiceAccountTTL <= 0 {
		bad("-serviceaccount-ttl must be positive")
	}
	if c.ShutdownTimeout <= 0 {
		bad("-shutdown-timeout must be positive")
	}
	if c.EventInterval < 0 {
		bad("-event-interval %s must be 0 (no Events) or positive", c.EventInterval)
	}
	if c.EventUnavailableAfter <= 0 {
		bad("-event-unavailable-after must be positive")
	}
	switch agent.TokenMode(c.TokenVerification) {
	case agent.TokenOff, agent.TokenIfPresent:
	case agent.TokenRequired:
		// IMDS requests carry no ServiceAccount token: -imds-listen stays
		// identified by source address alone (the flag help says so).
	default:
		bad("-token-verification %q must be off, if-present or required", c.TokenVerification)
	}
	if c.TokenVerification != string(agent.TokenOff) && c.TokenAudience == "" {
		bad("-token-audience must not be empty")
	}
	if c.TokenIssuer != "" {
		if u, err := url.Parse(c.TokenIssuer); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("-token-issuer %q must be an https URL", c.TokenIssuer)
		}
	}
	if c.IMDSTokens != string(agent.IMDSTokensRequired) && c.IMDSTokens != string(agent.IMDSTokensOptional) {
		bad("-imds-tokens %q must be required or optional", c.IMDSTokens)
	}
	if c.RateLimit < 0 || (c.RateLimit > 0 && c.RateBurst < 1) {
		bad("-rate-limit must be 0 (off) or positive with -rate-burst at least 1")
	}
	for _, a := range c.AllowedAccounts {
		if len(a) != 12 || strings.Trim(a, "0123456789") != "" {
			bad("-allowed-accounts: %q is not a 12-digit AWS account ID", a)
		}
	}
	if c.MaxConnections < 1 {
		bad("-max-connections must be at least 1")
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("-log-format %q must be json or console", c.LogFormat)
	}
	if c.LinkSetup {
		if _, err := c.linkOptions(); err != nil {
			bad("-link-setup: %v", err)
		}
	}
	return errors.Join(errs...)
}

// linkOptions is what -link-setup sets up: the agent's well-known addresses
// and, when it serves IMDS, the redirect of pods' 169.254.169.254:80 to its
// first IPv4 -imds-listen address.
func (c *Config) linkOptions() (netsetup.Options, error) {
	o := netsetup.Options{Interface: c.LinkInterface, Addresses: netsetup.DefaultAddresses()}
	if len(c.IMDSListen) > 0 {
		var target netip.AddrPort
		for _, a := range c.IMDSListen {
			if ap, err := netip.ParseAddrPort(a); err == nil && ap.Addr().Is4() {
				target = ap
				break
			}
		}
		if !target.IsValid() {
			return o, fmt.Errorf("the IMDS redirect needs an IPv4 -imds-listen address (e.g. 169.254.170.23:8169), not %q", c.IMDSListen)
		}
		o.IMDS = &netsetup.IMDSOptions{ListenAddr: target, PodInterfaces: c.LinkPodInterfaces}
	}
	return o, o.Validate()
}
