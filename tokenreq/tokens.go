package tokenreq

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
)

// Token refresh rules, the kubelet's: a token is replaced once 80 % of its
// lifetime has passed or once it is a day old, whichever comes first, a
// little earlier by a random jitter so that tokens issued together are not
// all refreshed in the same second.
const (
	// MinTokenExpiration is the shortest lifetime the TokenRequest API
	// accepts (expirationSeconds ≥ 600).
	MinTokenExpiration = 10 * time.Minute

	refreshFraction = 0.8
	maxTokenAge     = 24 * time.Hour
	maxJitter       = 10 * time.Second
	sweepPeriod     = time.Minute
)

// TokenSpec says which ServiceAccount token to get: for ServiceAccount
// Namespace/ServiceAccount, with audience Audience, valid for Expiration, and
// bound to Pod so that it dies with the pod. Pod.Namespace, when set, must be
// Namespace.
type TokenSpec struct {
	Namespace      string
	ServiceAccount string
	Audience       string
	Expiration     time.Duration
	Pod            cache.PodRef
}

func (s TokenSpec) validate() error {
	who := s.Namespace + "/" + s.ServiceAccount
	switch {
	case s.Namespace == "" || s.ServiceAccount == "" || s.Audience == "":
		return fmt.Errorf("token spec for ServiceAccount %q needs a namespace, a ServiceAccount and an audience", who)
	case s.Pod.Name == "" || s.Pod.UID == "":
		return fmt.Errorf("token spec for ServiceAccount %s needs the name and UID of the pod to bind the token to", who)
	case s.Pod.Namespace != "" && s.Pod.Namespace != s.Namespace:
		return fmt.Errorf("token spec for ServiceAccount %s names pod %s/%s in another namespace", who, s.Pod.Namespace, s.Pod.Name)
	case s.Expiration < MinTokenExpiration:
		return failure.Final(400, "InvalidTokenExpiration", fmt.Sprintf(
			"token expiration %v for ServiceAccount %s is below the minimum of %v", s.Expiration, who, MinTokenExpiration), nil)
	}
	return nil
}

// tokenKey identifies a cached token. Like the kubelet's, it holds nothing
// secret, so it is safe to log.
type tokenKey struct {
	namespace      string
	serviceAccount string
	audience       string
	expiration     time.Duration
	podName        string
	podUID         types.UID
}

func (s TokenSpec) key() tokenKey {
	return tokenKey{s.Namespace, s.ServiceAccount, s.Audience, s.Expiration, s.Pod.Name, s.Pod.UID}
}

// cachedToken is immutable once stored.
type cachedToken struct {
	token     string
	expires   time.Time // when the API server stops vouching for it
	refreshAt time.Time // when Token starts asking for a new one
}

// TokenOptions configures a TokenManager. Every field is optional.
type TokenOptions struct {
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// Logger defaults to a no-op logger; the manager names it "tokens".
	Logger *zap.Logger
	// Metrics, when set, counts TokenRequest calls and their latency.
	Metrics *metrics.Metrics
}

// TokenManager gets pod-bound ServiceAccount tokens from the TokenRequest API
// and caches them, refreshing by the kubelet's rules. It is safe for
// concurrent use. Concurrent calls for the same token are not coalesced here:
// the credentials cache above already makes one fetch per entry at a time.
type TokenManager struct {
	client  kube.Client
	clock   clock.PassiveClock
	logger  *zap.Logger
	metrics *metrics.Metrics
	jitter  func() time.Duration // replaced by tests

	mu        sync.RWMutex // guards tokens and nextSweep
	tokens    map[tokenKey]*cachedToken
	nextSweep time.Time
}

// NewTokenManager returns a TokenManager that requests tokens through client.
func NewTokenManager(client kube.Client, opts TokenOptions) *TokenManager {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &TokenManager{
		client:  client,
		clock:   opts.Clock,
		logger:  opts.Logger.Named("tokens"),
		metrics: opts.Metrics,
		jitter:  func() time.Duration { return rand.N(maxJitter) },
		tokens:  make(map[tokenKey]*cachedToken),
	}
}

// Token returns a token for spec: the cached one while it needs no refresh,
// otherwise a new one from the API server. When a refresh fails for a reason
// that may pass (timeout, throttling, API server down) and the cached token
// is still valid, it returns the cached token and logs the failure; it fails
// only when no valid token is left. A final failure (ServiceAccount or pod
// gone, access forbidden) drops the cached token and is returned at once.
// Errors are *failure.Error values and never contain a token.
func (m *TokenManager) Token(ctx context.Context, spec TokenSpec) (string, error) {
	if err := spec.validate(); err != nil {
		return "", err
	}
	key := spec.key()
	now := m.clock.Now()
	m.sweepIfDue(now)

	m.mu.RLock()
	cached := m.tokens[key]
	m.mu.RUnlock()
	if cached != nil && now.Before(cached.refreshAt) {
		return cached.token, nil
	}

	fresh, err := m.request(ctx, spec)
	if err == nil {
		m.mu.Lock()
		m.tokens[key] = fresh
		m.mu.Unlock()
		return fresh.token, nil
	}
	if cached != nil && failure.IsRetriable(err) && m.clock.Now().Before(cached.expires) {
		m.logger.Warn("token refresh failed, using the cached token",
			zap.String("namespace", spec.Namespace),
			zap.String("serviceAccount", spec.ServiceAccount),
			zap.String("pod", spec.Pod.Name),
			zap.Time("expires", cached.expires),
			zap.Error(err))
		return cached.token, nil
	}
	if cached != nil {
		m.mu.Lock()
		if m.tokens[key] == cached {
			delete(m.tokens, key)
		}
		m.mu.Unlock()
	}
	return "", err
}

// request calls the TokenRequest API once.
func (m *TokenManager) request(ctx context.Context, spec TokenSpec) (*cachedToken, error) {
	secs := int64(spec.Expiration / time.Second)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         []string{spec.Audience},
		ExpirationSeconds: &secs,
		BoundObjectRef: &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: spec.Pod.Name, UID: spec.Pod.UID,
		},
	}}
	issued := m.clock.Now()
	start := time.Now()
	resp, err := m.client.CreateToken(ctx, spec.Namespace, spec.ServiceAccount, req)
	elapsed := time.Since(start)

	var tok *cachedToken
	if err != nil {
		err = classifyTokenError(err, spec)
	} else {
		tok, err = m.fromResponse(resp, spec, issued, secs)
	}
	if m.metrics != nil {
		m.metrics.TokenDuration.Observe(elapsed.Seconds())
		m.metrics.TokenRequests.WithLabelValues(metrics.ResultOf(err, failure.IsRetriable)).Inc()
	}
	return tok, err
}

// fromResponse works out when a new token expires and when to refresh it.
// The lifetime is the one the API server granted (it may shorten the one
// asked for), counted from just before the request on our own clock; the
// returned expiration timestamp, on the API server's clock, only ever makes
// it shorter, so clock skew errs on the side of refreshing early.
func (m *TokenManager) fromResponse(resp *authenticationv1.TokenRequest, spec TokenSpec, issued time.Time, asked int64) (*cachedToken, error) {
	if resp == nil || resp.Status.Token == "" {
		return nil, failure.Retriable("InternalError", fmt.Sprintf(
			"the API server returned no token for ServiceAccount %s/%s", spec.Namespace, spec.ServiceAccount), 0, nil)
	}
	lifetime := time.Duration(asked) * time.Second
	if granted := resp.Spec.ExpirationSeconds; granted != nil && *granted > 0 {
		lifetime = time.Duration(*granted) * time.Second
	}
	expires := issued.Add(lifetime)
	if exp := resp.Status.ExpirationTimestamp.Time; exp.After(issued) && exp.Before(expires) {
		expires = exp
	}
	ttl := expires.Sub(issued)
	refreshIn := time.Duration(float64(ttl) * refreshFraction)
	if refreshIn > maxTokenAge {
		refreshIn = maxTokenAge
	}
	return &cachedToken{
		token:     resp.Status.Token,
		expires:   expires,
		refreshAt: issued.Add(refreshIn - m.jitter()),
	}, nil
}

// Forget drops the cached token for spec, so that the next Token call asks
// for a new one. Callers use it when a token they got was rejected.
func (m *TokenManager) Forget(spec TokenSpec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, spec.key())
}

// DropPod drops every token bound to the pod with the given UID. Call it when
// the pod is deleted: its tokens are useless from then on. A Token call for
// the pod that is still in flight may store one more token after DropPod
// returns; the sweep removes it once it expires.
func (m *TokenManager) DropPod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.tokens {
		if k.podUID == uid {
			delete(m.tokens, k)
		}
	}
}

// sweepIfDue drops expired tokens, at most once per sweepPeriod. It runs on
// the callers' goroutines, so the manager needs no background goroutine of
// its own; tokens of pods that stop asking are dropped on a later sweep or by
// DropPod.
func (m *TokenManager) sweepIfDue(now time.Time) {
	m.mu.RLock()
	due := !now.Before(m.nextSweep)
	m.mu.RUnlock()
	if !due {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Before(m.nextSweep) {
		return // another caller swept meanwhile
	}
	m.nextSweep = now.Add(sweepPeriod)
	for k, t := range m.tokens {
		if !now.Before(t.expires) {
			delete(m.tokens, k)
		}
	}
}
