package oidc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
	"unsafe"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"k8s.io/utils/clock"
)

// Defaults for Options.
const (
	DefaultLeeway          = time.Minute
	DefaultRefetchInterval = 10 * time.Second
	DefaultCacheSize       = 4096
)

// Options configures a Verifier. Issuer and Audience are required.
type Options struct {
	// Issuer is the token issuer, an https URL compared byte for byte with
	// iss and with the discovery document's issuer (Kubernetes:
	// --service-account-issuer).
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// HTTPClient fetches the discovery document and the JWKS; it must trust
	// the issuer's certificate. Default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// Clock tells the time for exp and nbf, the cache and the refetch rate
	// limit. Default: the real clock.
	Clock clock.PassiveClock
	// Leeway is the clock skew allowed on exp and nbf. Default (zero):
	// DefaultLeeway. Negative is invalid.
	Leeway time.Duration
	// RefetchInterval is the least time between two JWKS fetches, however
	// many tokens with unknown kids arrive. Default (zero):
	// DefaultRefetchInterval. Negative is invalid.
	RefetchInterval time.Duration
	// Logger receives key fetches and failures (never tokens). Default: none.
	Logger *zap.Logger
	// AllowedAlgs lists the signature algorithms accepted, a subset of RS256
	// and ES256. Default (empty): both.
	AllowedAlgs []string
	// CacheSize bounds the verified-result cache. Default (zero):
	// DefaultCacheSize; negative disables the cache.
	CacheSize int
}

// Verifier checks projected ServiceAccount tokens against one issuer and
// audience. It is safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	leeway   time.Duration
	clock    clock.PassiveClock
	allowed  []jose.SignatureAlgorithm
	keys     *keyStore
	results  *resultCache

	hits, misses, sigChecks atomic.Uint64
}

// New checks opts and returns a Verifier. It does no I/O: the issuer's
// keys are fetched on the first Verify, or by Prime.
func New(opts Options) (*Verifier, error) {
	u, err := url.Parse(opts.Issuer)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("oidc: issuer %s is not an https URL without query or fragment", quote(opts.Issuer))
	case opts.Audience == "":
		return nil, errors.New("oidc: audience is required")
	case opts.Leeway < 0 || opts.RefetchInterval < 0:
		return nil, errors.New("oidc: leeway and refetch interval must not be negative")
	}
	for _, alg := range opts.AllowedAlgs {
		if _, ok := algKeyType[alg]; !ok {
			return nil, fmt.Errorf("oidc: algorithm %s is not supported (only %s and %s)", quote(alg), RS256, ES256)
		}
	}
	v := &Verifier{
		issuer:   opts.Issuer,
		audience: opts.Audience,
		leeway:   cmp.Or(opts.Leeway, DefaultLeeway),
		clock:    opts.Clock,
		results:  newResultCache(cmp.Or(opts.CacheSize, DefaultCacheSize)),
	}
	if v.clock == nil {
		v.clock = clock.RealClock{}
	}
	algs := opts.AllowedAlgs
	if len(algs) == 0 {
		algs = []string{RS256, ES256}
	}
	for _, alg := range algs {
		v.allowed = append(v.allowed, jose.SignatureAlgorithm(alg))
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	v.keys = &keyStore{
		issuer:   opts.Issuer,
		client:   client,
		clock:    v.clock,
		interval: cmp.Or(opts.RefetchInterval, DefaultRefetchInterval),
		log:      log.Named("oidc"),
	}
	return v, nil
}

// Verify checks token (the bare compact JWS, without a "Bearer " prefix)
// and returns its claims. Errors wrap the Err* sentinels. A token
// verified before and not yet past its exp is answered from the cache.
//
// ctx bounds only this caller's wait for the issuer's keys; a fetch it
// started goes on for the other callers waiting on it.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, errorf(ErrMalformed, "token is %d bytes, more than %d", len(token), MaxTokenSize)
	}
	key := tokenHash(token)
	if c, ok := v.results.get(key, v.clock.Now()); ok {
		v.hits.Add(1)
		return c.clone(), nil
	}
	v.misses.Add(1)
	c, err := v.verify(ctx, token)
	if err != nil {
		return nil, err
	}
	v.results.put(key, c, v.clock.Now())
	return c.clone(), nil
}

// tokenHash is the result cache's key. It hashes the string's bytes in
// place: sha256 only reads its input, and copying a kilobyte token would be
// the hot path's largest cost.
func tokenHash(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

func (v *Verifier) verify(ctx context.Context, token string) (*Claims, error) {
	t, err := parseJWS(token, v.allowed)
	if err != nil {
		return nil, err
	}
	c, err := parseClaims(t.sig.UnsafePayloadWithoutVerification())
	if err != nil {
		return nil, err
	}
	// Claims first: these checks can only refuse, and only a token that
	// passes them may make the key store fetch the JWKS again.
	if err := c.validate(v.clock.Now(), v.issuer, v.audience, v.leeway); err != nil {
		return nil, err
	}
	k, err := v.keys.key(ctx, t)
	if err != nil {
		return nil, err
	}
	v.sigChecks.Add(1)
	if err := verifySignature(k, t); err != nil {
		return nil, err
	}
	return c, nil
}

// Prime fetches the issuer's keys unless they are loaded, so that a caller
// can report readiness and learn about a misconfigured issuer at start. It
// obeys the refetch rate limit: within RefetchInterval of a failed attempt
// it returns that attempt's error.
func (v *Verifier) Prime(ctx context.Context) error {
	if v.keys.current() != nil {
		return nil
	}
	if err := v.keys.refresh(ctx); err != nil {
		return err
	}
	if v.keys.current() == nil {
		return errorf(ErrDiscovery, "the issuer's keys are not loaded")
	}
	return nil
}

// Stats counts what a Verifier has done since it was made.
type Stats struct {
	// CacheHits and CacheMisses count Verify calls answered from the
	// result cache and not; CacheEntries is the cache's current size.
	CacheHits, CacheMisses uint64
	CacheEntries           int
	// SignatureChecks counts signature verifications attempted.
	SignatureChecks uint64
	// KeyFetches counts JWKS requests made (discovery not included).
	KeyFetches uint64
}

// Stats returns the counters; each is read atomically, the set is not a
// snapshot.
func (v *Verifier) Stats() Stats {
	return Stats{
		CacheHits:       v.hits.Load(),
		CacheMisses:     v.misses.Load(),
		CacheEntries:    v.results.len(),
		SignatureChecks: v.sigChecks.Load(),
		KeyFetches:      v.keys.fetches.Load(),
	}
}
