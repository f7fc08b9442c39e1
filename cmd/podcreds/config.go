package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/util/validation"

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
	HealthSocket    string
	MetricsListen   string

	IMDSListen           []string // opt-in IMDS-compatible endpoint
	IMDSTokens           string   // required or optional
	IMDSKeyFile          string   // the node's IMDS token key, shared across upgrades
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
	DrainDelay        time.Duration
	WarmTimeout       time.Duration
	StartupTaint      string
	// EventInterval is the least time between two Events of one reason on
	// one pod; 0 disables Events. EventUnavailableAfter is how long a pod
	// goes without credentials before it gets a CredentialsUnavailable Event.
	EventInterval         time.Duration
	EventUnavailableAfter time.Duration
	RateLimit             float64
	AllowedAccounts       []string
	RateBurst             int
	MaxConnections        int
	MaxConnsPerAddress    int

	LogLevel  zapcore.Level
	LogFormat string

	LinkSetup         bool     // create the listen addresses (and the IMDS redirect) at start
	LinkInterface     string   // the interface that carries them
	LinkPodInterfaces []string // pods' node-side interface names, for the IMDS redirect

	// Warnings are deprecated names that were used, to print at start.
	Warnings []string
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

// renamedFlags maps each deprecated flag name to its replacement. The new
// names say which token they are about: the one the agent asks for and
// exchanges with STS (sts-token-*), or the one a pod presents (pod-token-*).
// The old names keep working, with a warning.
var renamedFlags = map[string]string{
	"audience":           "sts-token-audience",
	"token-expiration":   "sts-token-expiration",
	"token-audience":     "pod-token-audience",
	"token-issuer":       "pod-token-issuer",
	"token-verification": "pod-token-verification",
}

// conventionalEnv are the variables a DaemonSet conventionally sets, read for
// a flag when neither it nor PODCREDS_<FLAG> is given.
var conventionalEnv = map[string]string{"node-name": "NODE_NAME", "kubeconfig": "KUBECONFIG", "sts-region": "AWS_REGION"}

// flagSet declares every flag of `podcreds agent` into c, and the deprecated
// names too when withRenamed (help lists only the current ones). logLevel
// receives --log-level's text.
func flagSet(c *Config, logLevel *string, withRenamed bool) *flag.FlagSet {
	fs := flag.NewFlagSet("podcreds agent", flag.ContinueOnError)
	// Errors are reported by the caller, all at once and without the
	// flag list; -h prints the list through agentUsage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.NodeName, "node-name", "", "this node's name, as in spec.nodeName (env NODE_NAME)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster (env KUBECONFIG)")
	fs.Var(&listFlag{values: &c.Listen}, "listen", "container-credentials listen address, repeatable (AWS_CONTAINER_CREDENTIALS_FULL_URI); \"none\" disables")
	fs.Var(&listFlag{values: &c.ECSListen}, "ecs-listen", "listen address that serves credentials on every path, repeatable (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on 169.254.170.2); \"none\" disables")
	fs.StringVar(&c.CredentialsPath, "credentials-path", "/v1/credentials", "path of the credentials endpoint on --listen addresses")
	fs.StringVar(&c.HealthListen, "health-listen", "127.0.0.1:8090", "address for /healthz and /readyz")
	fs.StringVar(&c.HealthSocket, "health-socket", "", "also serve /healthz and /readyz on this Unix socket, for 'podcreds probe' (the DaemonSet: "+defaultHealthSocket+"); during an upgrade two agents share --health-listen, a socket in the container's own filesystem reaches only its own")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:8091", "address for /metrics; empty disables")
	fs.Var(&listFlag{values: &c.IMDSListen}, "imds-listen", "IMDS-compatible endpoint listen address, repeatable; off unless set. The DaemonSet uses 169.254.170.23:8169 with -link-setup, which redirects pods' 169.254.169.254:80 to it")
	fs.StringVar(&c.IMDSTokens, "imds-tokens", "required", "IMDS session tokens: required (IMDSv2 only) or optional (IMDSv1 allowed)")
	fs.StringVar(&c.IMDSKeyFile, "imds-key-file", "", "file on the node holding the key IMDS session tokens are signed with, created if missing and shared by the old and new agent during an upgrade so pods' tokens stay valid (a hostPath; empty: a key per process)")
	fs.StringVar(&c.IMDSRegion, "imds-region", "", "region IMDS reports in placement/region; empty: --sts-region")
	fs.StringVar(&c.IMDSAvailabilityZone, "imds-availability-zone", "", "availability zone IMDS reports in placement/availability-zone; empty: 404")
	fs.StringVar(&c.STSRegion, "sts-region", "us-east-1", "STS region (env AWS_REGION)")
	fs.StringVar(&c.STSEndpoint, "sts-endpoint", "", "STS endpoint URL override (VPC endpoint, MinIO); empty: the region's default")
	fs.Float64Var(&c.STSRate, "sts-rate", 20, "this node's STS calls per second at most (halved while STS throttles, recovering on success); 0: no cap")
	fs.IntVar(&c.STSBurst, "sts-burst", 50, "burst of STS calls allowed (a node starting many pods at once)")
	fs.Float64Var(&c.KubeAPIQPS, "kube-api-qps", 50, "Kubernetes API requests per second from this agent (TokenRequests, ServiceAccount reads; the kubelet's default)")
	fs.IntVar(&c.KubeAPIBurst, "kube-api-burst", 100, "burst of Kubernetes API requests (a node starting or an agent restarting onto many ServiceAccounts)")
	fs.DurationVar(&c.MaxFetchWait, "max-fetch-wait", 800*time.Millisecond, "longest a request waits for a fetch before a 503 asking it to retry (the fetch continues); SDKs time out after about 1s")
	fs.StringVar(&c.Audience, "sts-token-audience", "sts.amazonaws.com", "audience of the ServiceAccount token the agent requests and exchanges with STS, when the ServiceAccount does not set eks.amazonaws.com/audience")
	fs.DurationVar(&c.TokenExpiration, "sts-token-expiration", time.Hour, "lifetime of the ServiceAccount token the agent requests and exchanges with STS, when the ServiceAccount does not set eks.amazonaws.com/token-expiration (min 10m)")
	fs.StringVar(&c.TokenVerification, "pod-token-verification", "if-present", "check of the projected token a pod presents in Authorization on the container endpoints: off, if-present or required (the IMDS endpoint, whose clients send no such token, is always identified by source address alone)")
	fs.StringVar(&c.TokenAudience, "pod-token-audience", "podcreds", "audience the token a pod presents must carry")
	fs.StringVar(&c.TokenIssuer, "pod-token-issuer", "", "issuer (https URL) whose OIDC discovery verifies the tokens pods present; empty: ask the API server")
	fs.StringVar(&c.ClusterName, "cluster-name", "", "value of the kubernetes-cluster session tag on chained sessions (a ServiceAccount's podcreds.io/target-role-arn); empty: no cluster tag")
	fs.DurationVar(&c.CredentialDuration, "credential-duration", time.Hour, "lifetime asked of STS for credentials (15m to 12h); a role whose MaxSessionDuration is shorter gets 1h")
	fs.Float64Var(&c.RefreshFraction, "refresh-fraction", cache.DefaultRefreshFraction, "refresh credentials after this fraction of their lifetime (with jitter)")
	fs.DurationVar(&c.RefreshBefore, "refresh-before", 0, "refresh no later than when this much lifetime is left (default: a third of -credential-duration, at most 20m)")
	fs.DurationVar(&c.UnknownPodWait, "unknown-pod-wait", time.Second, "how long a request from an unknown address waits for the pod to appear before one API lookup")
	fs.DurationVar(&c.ServiceAccountTTL, "serviceaccount-ttl", 30*time.Second, "how long a ServiceAccount's role annotation is remembered")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to drain requests on SIGTERM")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 2*time.Second, "on SIGTERM, after leaving the listening group, how long to keep answering on open connections (each answer closing its connection) before closing idle ones; 0 disables")
	fs.StringVar(&c.StartupTaint, "startup-taint", "", "key of a NoSchedule taint the node registers with (kubelet --register-with-taints, Karpenter or Cluster Autoscaler startup taints); the agent removes it once it serves, so no pod is scheduled before its credentials can be (needs deploy/startup-taint.yaml)")
	fs.DurationVar(&c.WarmTimeout, "warm-timeout", 30*time.Second, "longest a starting agent waits for every pod's credentials before it serves")
	fs.DurationVar(&c.EventInterval, "event-interval", podevents.DefaultInterval, "least time between two Kubernetes Events of one reason on one pod (a refusal, STS denying it, credentials unavailable); 0 disables Events")
	fs.DurationVar(&c.EventUnavailableAfter, "event-unavailable-after", podevents.DefaultUnavailableAfter, "how long a pod's requests fail retriably (STS down or throttling) before it gets a CredentialsUnavailable Event")
	fs.Var(&listFlag{values: &c.AllowedAccounts}, "allowed-accounts", "AWS account IDs whose roles may be served, repeatable or comma-separated; empty: any")
	fs.Float64Var(&c.RateLimit, "rate-limit", 50, "requests per second allowed from one source address (429 beyond); 0 disables")
	fs.IntVar(&c.RateBurst, "rate-burst", 100, "burst allowed from one source address")
	fs.IntVar(&c.MaxConnections, "max-connections", 1024, "concurrent connections per listener (beyond: new connections wait in the kernel's backlog)")
	fs.IntVar(&c.MaxConnsPerAddress, "max-connections-per-address", 32, "concurrent connections per listener from one source address (beyond: reset at once, never queued); with -link-setup the kernel refuses the excess first, counted over all the listeners pods reach; hostNetwork pods and node processes share the node's address and so one share")
	fs.BoolVar(&c.LinkSetup, "link-setup", false, "at start, create the interface carrying 169.254.170.23, 169.254.170.2 and fd00:ec2::23 (IPv6 nodes), cap each source's connections to the listeners in the kernel (-max-connections-per-address; without kernel support a warning, and the agent's own cap) and, with -imds-listen, redirect pods' 169.254.169.254:80 there; all stay when the agent exits, so pods never reach the node's real IMDS while it is down ('podcreds uninstall-node' removes them; needs CAP_NET_ADMIN)")
	fs.StringVar(&c.LinkInterface, "link-interface", netsetup.DefaultInterface, "the dummy interface -link-setup creates")
	fs.Var(&listFlag{values: &c.LinkPodInterfaces}, "link-pod-interfaces", "node-side interface names of pods whose IMDS traffic -link-setup redirects, repeatable or comma-separated; a trailing + matches any suffix")
	fs.StringVar(logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or console")
	if withRenamed {
		for old, now := range renamedFlags {
			f := fs.Lookup(now)
			fs.Var(f.Value, old, "deprecated: use -"+now)
		}
	}
	return fs
}

// newConfig is a Config holding the defaults of the flags that are lists.
func newConfig() *Config {
	return &Config{
		Listen:    []string{"169.254.170.23:80", "[fd00:ec2::23]:80"},
		ECSListen: []string{"169.254.170.2:80"},

		LinkPodInterfaces: slices.Clone(netsetup.DefaultPodInterfaces),
	}
}

// agentUsage is `podcreds agent -h`: every current flag with its help.
func agentUsage() string {
	var level string
	fs := flagSet(newConfig(), &level, false)
	var b strings.Builder
	b.WriteString("usage: podcreds agent [flags]\n\nEvery flag can also be set in the environment as PODCREDS_<FLAG>\n" +
		"(dashes as underscores, e.g. PODCREDS_LOG_LEVEL=debug).\n\nflags:\n")
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// parseConfig reads flags, then the environment for any flag not given:
// PODCREDS_<FLAG> (dashes as underscores), plus the conventional NODE_NAME,
// KUBECONFIG and AWS_REGION that a DaemonSet sets. Every problem is
// reported at once, as one error joining them; deprecated names that were
// used are listed in Config.Warnings.
func parseConfig(args []string, getenv func(string) string) (*Config, error) {
	c := newConfig()
	var logLevel string
	fs := flagSet(c, &logLevel, true)

	// Parse past a bad flag to find the others: flag stops at the first,
	// leaving the arguments after it (or, for bad syntax such as "---x",
	// leaving it in place: then skip it, or this would never end).
	var errs []error
	for rest := args; ; {
		err := fs.Parse(rest)
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		if err == nil {
			break
		}
		errs = append(errs, err)
		if next := fs.Args(); len(next) < len(rest) {
			rest = next
		} else {
			rest = rest[1:]
		}
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q (flags are -name=value)", fs.Args()))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for old, now := range renamedFlags {
		if given[old] && given[now] {
			errs = append(errs, fmt.Errorf("-%s and -%s are the same setting; keep -%s only", old, now, now))
		}
		if given[old] {
			c.Warnings = append(c.Warnings, fmt.Sprintf("-%s is deprecated; use -%s", old, now))
			given[now] = true
		}
	}
	if len(errs) > 0 {
		// A value that failed to parse may have been stored half-way
		// (flag zeroes a duration it cannot read): put back the default,
		// so the checks below report other problems, not that one again.
		fs.VisitAll(func(f *flag.Flag) {
			if !given[f.Name] && renamedFlags[f.Name] == "" && f.Value.String() != f.DefValue {
				_ = f.Value.Set(f.DefValue)
			}
		})
	}
	oldName := map[string]string{}
	for old, now := range renamedFlags {
		oldName[now] = old
	}
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || renamedFlags[f.Name] != "" {
			return
		}
		envName := func(flagName string) string {
			return "PODCREDS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
		}
		env := envName(f.Name)
		v := getenv(env)
		if old := oldName[f.Name]; v == "" && old != "" {
			if env, v = envName(old), getenv(envName(old)); v != "" {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s is deprecated; use %s", env, envName(f.Name)))
			}
		}
		if v == "" && conventionalEnv[f.Name] != "" {
			env = conventionalEnv[f.Name]
			v = getenv(env)
		}
		if v == "" {
			return
		}
		given[f.Name] = true
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
		}
	})
	slices.Sort(c.Warnings)
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level: %w", err))
	}
	for _, l := range []*[]string{&c.Listen, &c.ECSListen} {
		if len(*l) == 1 && (*l)[0] == "none" {
			*l = nil
		}
	}
	if c.IMDSRegion == "" {
		c.IMDSRegion = c.STSRegion
	}
	if !given["refresh-before"] {
		// One-hour credentials keep the 20-minute margin clients and STS
		// outages are planned around; shorter ones refresh a third before
		// they end, so -credential-duration alone is always valid.
		c.RefreshBefore = min(cache.DefaultRefreshBefore, c.CredentialDuration/3)
	}
	errs = append(errs, c.validate())
	return c, errors.Join(errs...)
}

// problems flattens a joined error into one line per problem.
func problems(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []string{err.Error()}
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
	errs = append(errs, c.overlappingListeners()...)
	if !strings.HasPrefix(c.CredentialsPath, "/") {
		bad("-credentials-path %q must start with /", c.CredentialsPath)
	}
	if c.STSRegion == "" {
		bad("-sts-region must not be empty")
	} else if !regionRE.MatchString(c.STSRegion) {
		bad("-sts-region %q is not an AWS region name (like us-east-1 or eu-central-2; also set by AWS_REGION)", c.STSRegion)
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
		bad("-sts-token-audience must not be empty")
	}
	if c.TokenExpiration < roles.MinTokenExpiration {
		bad("-sts-token-expiration %s is below the TokenRequest minimum of %s", c.TokenExpiration, roles.MinTokenExpiration)
	}
	if c.CredentialDuration < tokenreq.MinSessionDuration || c.CredentialDuration > tokenreq.MaxSessionDuration || c.CredentialDuration%time.Second != 0 {
		bad("-credential-duration %s must be whole seconds from %s to %s", c.CredentialDuration, tokenreq.MinSessionDuration, tokenreq.MaxSessionDuration)
	}
	if c.RefreshFraction <= 0 || c.RefreshFraction >= 1 {
		bad("-refresh-fraction %v must be between 0 and 1", c.RefreshFraction)
	}
	if c.RefreshBefore < 0 || c.RefreshBefore >= c.CredentialDuration {
		bad("-refresh-before %s must be less than -credential-duration %s: lower -refresh-before, or leave it unset (it then defaults to a third of -credential-duration, at most 20m)", c.RefreshBefore, c.CredentialDuration)
	}
	if c.UnknownPodWait < 0 || c.UnknownPodWait > 30*time.Second {
		bad("-unknown-pod-wait %s must be between 0 and 30s (SDKs time out after 1–5s)", c.UnknownPodWait)
	}
	if c.ServiceAccountTTL <= 0 {
		bad("-serviceaccount-ttl must be positive")
	}
	if c.DrainDelay < 0 || c.DrainDelay >= c.ShutdownTimeout {
		bad("-drain-delay %s must be at least 0 and shorter than -shutdown-timeout %s", c.DrainDelay, c.ShutdownTimeout)
	}
	if c.StartupTaint != "" {
		if errs := validation.IsQualifiedName(c.StartupTaint); len(errs) > 0 {
			bad("-startup-taint %q is not a taint key: %s", c.StartupTaint, strings.Join(errs, "; "))
		}
	}
	if c.WarmTimeout <= 0 {
		bad("-warm-timeout must be positive")
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
		bad("-pod-token-verification %q must be off, if-present or required", c.TokenVerification)
	}
	if c.TokenVerification != string(agent.TokenOff) && c.TokenAudience == "" {
		bad("-pod-token-audience must not be empty")
	}
	if c.TokenIssuer != "" {
		if u, err := url.Parse(c.TokenIssuer); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("-pod-token-issuer %q must be an https URL", c.TokenIssuer)
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
	if c.MaxConnsPerAddress < 1 || c.MaxConnsPerAddress > c.MaxConnections {
		bad("-max-connections-per-address must be from 1 to -max-connections (%d)", c.MaxConnections)
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

// linkOptions is what -link-setup sets up: the agent's well-known addresses,
// when it serves IMDS the redirect of pods' 169.254.169.254:80 to its first
// IPv4 -imds-listen address, and the kernel's per-source connection cap
// (-max-connections-per-address) on every listener pods reach that is
// given as an IP address and a port (a listener on a host name or on port 0
// keeps only the agent's own cap).
func (c *Config) linkOptions() (netsetup.Options, error) {
	o := netsetup.Options{Interface: c.LinkInterface, Addresses: netsetup.DefaultAddresses()}
	var capped []netip.AddrPort
	for _, a := range slices.Concat(c.Listen, c.ECSListen, c.IMDSListen) {
		if ap, err := netip.ParseAddrPort(a); err == nil && ap.Port() != 0 && !slices.Contains(capped, ap) {
			capped = append(capped, ap)
		}
	}
	if len(capped) > 0 {
		o.ConnCap = &netsetup.ConnCap{Max: c.MaxConnsPerAddress, Listeners: capped}
	}
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

// regionRE matches AWS region names (us-east-1, us-gov-west-1, cn-north-1,
// us-isob-east-1, ...) and aws-global, the SDK's name for the global STS
// endpoint.
var regionRE = regexp.MustCompile(`^([a-z]{2}(-[a-z]+)+-[0-9]+|aws-global)$`)

// listenAddr is one listener's address, for finding overlaps.
type listenAddr struct {
	flag string
	raw  string
	ap   netip.AddrPort // zero for a host name
}

// overlappingListeners reports addresses that two listeners would both bind:
// the same address twice, or a wildcard address and another on its port.
// Port 0 (any free port) never overlaps.
func (c *Config) overlappingListeners() []error {
	var all []listenAddr
	add := func(flag string, addrs ...string) {
		for _, a := range addrs {
			l := listenAddr{flag: flag, raw: a}
			if ap, err := netip.ParseAddrPort(a); err == nil {
				l.ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			} else if _, port, err := net.SplitHostPort(a); err != nil || port == "0" {
				continue // unparseable (reported on its own) or any free port
			}
			if l.ap.IsValid() && l.ap.Port() == 0 {
				continue
			}
			all = append(all, l)
		}
	}
	add("-listen", c.Listen...)
	add("-ecs-listen", c.ECSListen...)
	add("-imds-listen", c.IMDSListen...)
	add("-health-listen", c.HealthListen)
	add("-metrics-listen", c.MetricsListen)
	var errs []error
	for i, a := range all {
		for _, b := range all[:i] {
			switch {
			case !a.overlaps(b):
			case a.flag == b.flag:
				errs = append(errs, fmt.Errorf("%s names %s and %s, which bind the same address: give each once", a.flag, b.raw, a.raw))
			default:
				errs = append(errs, fmt.Errorf("%s %s and %s %s would bind the same address: each listener needs its own", b.flag, b.raw, a.flag, a.raw))
			}
		}
	}
	return errs
}

func (a listenAddr) overlaps(b listenAddr) bool {
	if !a.ap.IsValid() || !b.ap.IsValid() {
		// Host names: only the same spelling is known to collide.
		return !a.ap.IsValid() && !b.ap.IsValid() && strings.EqualFold(a.raw, b.raw)
	}
	if a.ap.Port() != b.ap.Port() {
		return false
	}
	x, y := a.ap.Addr(), b.ap.Addr()
	switch {
	case x == y:
		return true
	case x.IsUnspecified() && x.Is6(), y.IsUnspecified() && y.Is6():
		return true // [::] takes the port for IPv4 too on a dual-stack host
	case x.IsUnspecified():
		return y.Is4()
	case y.IsUnspecified():
		return x.Is4()
	}
	return false
}
