// Package tokenreq turns a pod's identity into temporary AWS credentials, the
// way IRSA does but without a token file in the pod: a TokenManager gets a
// ServiceAccount token bound to the pod from the Kubernetes TokenRequest API,
// and an Exchanger trades it with STS AssumeRoleWithWebIdentity for the role
// the ServiceAccount names. The Exchanger is the credentials cache's Fetcher.
//
// Tokens never leave this package except in the call to STS: no error, log
// line or metric carries one.
package tokenreq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

// Defaults for what a cache.Key leaves unset, and STS's limits.
const (
	// DefaultAudience is IRSA's default token audience.
	DefaultAudience = "sts.amazonaws.com"
	// DefaultTokenExpiration is the lifetime of the ServiceAccount tokens
	// podcreds asks for when the key names none. The token only travels to
	// STS, so it can be short-lived; the TokenManager reuses it for about
	// 48 minutes.
	DefaultTokenExpiration = time.Hour
	// DefaultSessionDuration is the lifetime of the AWS credentials, and
	// the largest one every role accepts (MaxSessionDuration defaults to 1 h).
	DefaultSessionDuration = time.Hour
	// MinSessionDuration is the shortest session STS grants (900 s).
	MinSessionDuration = 15 * time.Minute
	// MaxSessionDuration is the longest session STS grants (43200 s).
	MaxSessionDuration = 12 * time.Hour
)

// TokenSource gives out pod-bound ServiceAccount tokens. *TokenManager
// implements it.
type TokenSource interface {
	// Token returns a token for spec; errors are *failure.Error values.
	Token(ctx context.Context, spec TokenSpec) (string, error)
	// Forget drops a cached token that STS rejected, so that the next
	// Token call asks the API server for a new one.
	Forget(spec TokenSpec)
}

var _ TokenSource = (*TokenManager)(nil)

// ExchangerOptions configures an Exchanger. Every field is optional.
type ExchangerOptions struct {
	// SessionDuration is the lifetime asked of STS, in whole seconds
	// within [MinSessionDuration, MaxSessionDuration]; zero means
	// DefaultSessionDuration. A role accepts at most its MaxSessionDuration
	// (one hour unless raised): for a role that refuses a longer one, the
	// Exchanger asks one hour instead, and remembers that for a day.
	SessionDuration time.Duration
	// Clock stamps Credentials.Issued; it defaults to the real clock.
	Clock clock.PassiveClock
	// Logger defaults to a no-op logger; the Exchanger names it "exchange".
	Logger *zap.Logger
	// Metrics, when set, counts STS calls and their latency.
	Metrics *metrics.Metrics
	// Chain makes the second hop of keys that name a target role
	// (AssumeRole with session tags); nil refuses such keys. The STS client
	// given to NewExchanger usually serves as both.
	Chain ChainClient
	// ClusterName, when set, is the kubernetes-cluster session tag of
	// second hops.
	ClusterName string
}

// Exchanger is a cache.Fetcher that trades a pod's ServiceAccount token for
// AWS credentials. Its only state is which roles refused the configured
// session duration; it is safe for concurrent use.
type Exchanger struct {
	tokens   TokenSource
	sts      STSClient
	duration int32 // seconds
	clock    clock.PassiveClock
	logger   *zap.Logger
	metrics  *metrics.Metrics

	chain   ChainClient
	cluster string
	hop1    singleflight.Group // first hops of chained keys, by key

	mu        sync.Mutex
	capped    map[string]time.Time             // role ARN -> until when it is asked one hour
	firstHops map[cache.Key]*cache.Credentials // first hops of chained keys (no target)
}

// cappedFor is how long a role that refused the configured session duration
// is asked for one hour before the configured duration is tried again (its
// MaxSessionDuration may have been raised). One failed call per role, node
// and day is the price.
const cappedFor = 24 * time.Hour

// roleDuration is the session duration to ask for role.
func (e *Exchanger) roleDuration(role string) int32 {
	if e.duration <= oneHour {
		return e.duration
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if until, ok := e.capped[role]; ok {
		if e.clock.Now().Before(until) {
			return oneHour
		}
		delete(e.capped, role)
	}
	return e.duration
}

// oneHour is every role's least MaxSessionDuration, in seconds.
const oneHour = 3600

// exceedsMaxSession reports whether STS refused a request because its
// DurationSeconds is longer than the role's MaxSessionDuration.
func exceedsMaxSession(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" &&
		strings.Contains(apiErr.ErrorMessage(), "MaxSessionDuration")
}

var _ cache.Fetcher = (*Exchanger)(nil)

// NewExchanger returns an Exchanger that gets tokens from tokens and
// exchanges them through client. It fails only on invalid options.
func NewExchanger(tokens TokenSource, client STSClient, opts ExchangerOptions) (*Exchanger, error) {
	if opts.SessionDuration == 0 {
		opts.SessionDuration = DefaultSessionDuration
	}
	if opts.SessionDuration < MinSessionDuration || opts.SessionDuration > MaxSessionDuration ||
		opts.SessionDuration%time.Second != 0 {
		return nil, fmt.Errorf("session duration %v must be whole seconds between %v and %v",
			opts.SessionDuration, MinSessionDuration, MaxSessionDuration)
	}
	if tokens == nil || client == nil {
		return nil, fmt.Errorf("an Exchanger needs a token source and an STS client")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Exchanger{
		tokens:    tokens,
		sts:       client,
		duration:  int32(opts.SessionDuration / time.Second),
		clock:     opts.Clock,
		logger:    opts.Logger.Named("exchange"),
		metrics:   opts.Metrics,
		capped:    map[string]time.Time{},
		chain:     opts.Chain,
		cluster:   opts.ClusterName,
		firstHops: map[cache.Key]*cache.Credentials{},
	}, nil
}

// Fetch gets a token bound to pod for key's ServiceAccount and audience and
// exchanges it for credentials for key.RoleARN. Errors are *failure.Error
// values that name the role and ServiceAccount and never contain the token
// or any credential.
//
// A key with a TargetRoleARN is served through a second hop (fetchChained).
func (e *Exchanger) Fetch(ctx context.Context, key cache.Key, pod cache.PodRef) (*cache.Credentials, error) {
	who := fmt.Sprintf("ServiceAccount %s/%s", key.Namespace, key.ServiceAccount)
	if key.RoleARN == "" {
		return nil, failure.Final(http.StatusNotFound, "NoRole", "no IAM role is configured for "+who, nil)
	}
	if key.TargetRoleARN != "" {
		return e.fetchChained(ctx, key, pod, who)
	}
	return e.fetchDirect(ctx, key, pod, who)
}

// fetchDirect makes the first hop: a pod-bound token exchanged with
// AssumeRoleWithWebIdentity for key.RoleARN.
func (e *Exchanger) fetchDirect(ctx context.Context, key cache.Key, pod cache.PodRef, who string) (*cache.Credentials, error) {
	spec := TokenSpec{
		Namespace:      key.Namespace,
		ServiceAccount: key.ServiceAccount,
		Audience:       key.Audience,
		Expiration:     key.TokenExpiration,
		Pod:            pod,
	}
	if spec.Audience == "" {
		spec.Audience = DefaultAudience
	}
	if spec.Expiration == 0 {
		spec.Expiration = DefaultTokenExpiration
	}
	token, err := e.tokens.Token(ctx, spec)
	if err != nil {
		return nil, err
	}

	dur := e.roleDuration(key.RoleARN)
	start := time.Now()
	out, fe := e.assume(ctx, key, token, who, dur)
	if fe != nil && dur > oneHour && exceedsMaxSession(fe) {
		e.count(start, fe)
		e.mu.Lock()
		e.capped[key.RoleARN] = e.clock.Now().Add(cappedFor)
		e.mu.Unlock()
		e.logger.Warn("role refuses the configured credential duration; asking one hour for a day (raise the role's MaxSessionDuration, or lower --credential-duration)",
			zap.String("roleARN", key.RoleARN), zap.Duration("asked", time.Duration(dur)*time.Second))
		start = time.Now()
		out, fe = e.assume(ctx, key, token, who, oneHour)
	}
	var creds *cache.Credentials
	if fe != nil {
		if tokenRejected(fe) {
			e.tokens.Forget(spec)
		}
		err = fe
	} else {
		creds, err = e.credentials(out, key.RoleARN, who)
	}
	e.count(start, err)
	if err != nil {
		return nil, err
	}
	if ce := e.logger.Check(zap.DebugLevel, "assumed role"); ce != nil {
		ce.Write(zap.String("namespace", key.Namespace), zap.String("serviceAccount", key.ServiceAccount),
			zap.String("roleARN", key.RoleARN), zap.Time("expiration", creds.Expiration))
	}
	return creds, nil
}

// assume makes one AssumeRoleWithWebIdentity call for key with token,
// asking for dur seconds. Its error is classifySTSError's.
func (e *Exchanger) assume(ctx context.Context, key cache.Key, token, who string, dur int32) (*sts.AssumeRoleWithWebIdentityOutput, *failure.Error) {
	out, err := e.sts.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(key.RoleARN),
		RoleSessionName:  aws.String(e.sessionName(key)),
		WebIdentityToken: aws.String(token),
		DurationSeconds:  aws.Int32(dur),
	})
	if err != nil {
		return nil, classifySTSError(err, token, key.RoleARN, who)
	}
	return out, nil
}

// sessionName is the role session name for key: its chosen one, else the
// ServiceAccount's default. Both hops use it, so CloudTrail shows the same
// name for the web-identity session and the chained one.
func (e *Exchanger) sessionName(key cache.Key) string {
	if key.SessionName != "" {
		return key.SessionName
	}
	return SessionName(key.Namespace, key.ServiceAccount)
}

// The two hops, for metrics.
const (
	hopWebIdentity = iota
	hopTarget
)

// count records a first-hop STS call that started at start and ended with err.
func (e *Exchanger) count(start time.Time, err error) { e.countHop(hopWebIdentity, start, err) }

// countHop records one STS call of hop that started at start and ended with err.
func (e *Exchanger) countHop(hop int, start time.Time, err error) {
	if e.metrics == nil {
		return
	}
	if fe, ok := err.(*failure.Error); ok && fe == nil {
		err = nil // a typed nil from a hop that succeeded
	}
	result := metrics.ResultOf(err, failure.IsRetriable)
	if hop == hopTarget {
		e.metrics.STSChainDuration.Observe(time.Since(start).Seconds())
		e.metrics.STSChainRequests.WithLabelValues(result).Inc()
		return
	}
	e.metrics.STSDuration.Observe(time.Since(start).Seconds())
	e.metrics.STSRequests.WithLabelValues(result).Inc()
}

// credentials checks an STS answer and turns it into cache.Credentials. An
// answer without credentials is STS misbehaving, which may pass.
func (e *Exchanger) credentials(out *sts.AssumeRoleWithWebIdentityOutput, roleARN, who string) (*cache.Credentials, error) {
	if out == nil || out.Credentials == nil || out.Credentials.Expiration == nil ||
		aws.ToString(out.Credentials.AccessKeyId) == "" ||
		aws.ToString(out.Credentials.SecretAccessKey) == "" ||
		aws.ToString(out.Credentials.SessionToken) == "" {
		return nil, failure.Retriable("InternalError",
			"STS answered without complete credentials for role "+roleARN+" ("+who+")", 0, nil)
	}
	account := ""
	if out.AssumedRoleUser != nil {
		account = accountID(aws.ToString(out.AssumedRoleUser.Arn))
	}
	if account == "" {
		account = accountID(roleARN)
	}
	c := out.Credentials
	return cache.NewCredentials(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken, account,
		e.clock.Now(), c.Expiration.UTC()), nil
}

// accountID returns the account field of an ARN
// (arn:partition:service:region:account:resource) when it is a 12-digit AWS
// account ID, and "" otherwise (MinIO's ARNs, for one, have none).
func accountID(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || len(parts[4]) != 12 {
		return ""
	}
	for _, r := range parts[4] {
		if r < '0' || r > '9' {
			return ""
		}
	}
	return parts[4]
}
