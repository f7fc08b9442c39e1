package oidc

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4/json"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
)

const (
	// fetchTimeout bounds one discovery-plus-JWKS fetch. It runs detached
	// from the callers' contexts, so one impatient caller cannot cancel the
	// fetch the others wait for.
	fetchTimeout = 15 * time.Second
	// maxDocSize bounds the discovery document and the JWKS.
	maxDocSize = 1 << 20
)

// keyStore holds the issuer's keys and fetches them: through discovery the
// first time (and after a failure), the JWKS alone otherwise.
//
// Concurrency: the fields under mu are guarded by it. Fetches happen inside
// group under one key, so concurrent callers share one; a fetch starts only
// if the last attempt (successful or not) is at least interval old, so the
// issuer sees at most one fetch per interval however many tokens with
// unknown kids arrive. A caller that finds a fetch in progress waits for it
// rather than being turned away by the rate limit.
type keyStore struct {
	issuer   string
	client   *http.Client
	clock    clock.PassiveClock
	interval time.Duration
	log      *zap.Logger
	group    singleflight.Group
	fetches  atomic.Uint64 // JWKS GETs attempted

	mu          sync.RWMutex
	keys        *keySet // nil until the first successful fetch
	jwksURI     string  // from discovery; empty until discovered and after a failed fetch
	lastAttempt time.Time
	lastErr     error // of the last attempt; nil if it succeeded
	fetching    bool  // a fetch is in progress
}

// key returns the issuer key that t must verify with. It fetches the keys
// when there are none yet or when t names a kid they do not hold.
func (s *keyStore) key(ctx context.Context, t *jws) (*jwk, error) {
	if set := s.current(); set != nil {
		if k, found, err := set.find(t); found {
			return k, err
		}
		s.log.Debug("unknown kid; fetching the issuer's keys", zap.String("kid", quote(t.kid)))
	}
	fetchErr := s.refresh(ctx)
	set := s.current()
	switch {
	case set == nil && fetchErr != nil:
		return nil, fetchErr
	case set == nil:
		return nil, errorf(ErrDiscovery, "the issuer's keys are not loaded")
	}
	k, _, err := set.find(t)
	if err != nil && fetchErr != nil {
		return nil, errorf(err, "and fetching the issuer's keys failed: %w", fetchErr)
	}
	return k, err
}

func (s *keyStore) current() *keySet {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys
}

// dueLocked reports whether a fetch may start now. Callers hold mu.
func (s *keyStore) dueLocked() bool {
	return s.lastAttempt.IsZero() || s.clock.Since(s.lastAttempt) >= s.interval
}

// refresh fetches the keys if the rate limit allows, joining a fetch in
// progress if there is one. It returns the error of the latest attempt, so
// a caller turned away by the rate limit still learns that the issuer is
// unreachable.
func (s *keyStore) refresh(ctx context.Context) error {
	s.mu.RLock()
	limited, lastErr := !s.dueLocked() && !s.fetching, s.lastErr
	s.mu.RUnlock()
	if limited {
		return lastErr
	}
	ch := s.group.DoChan("jwks", func() (any, error) {
		s.mu.Lock()
		if !s.dueLocked() { // a fetch finished since this caller looked
			defer s.mu.Unlock()
			return nil, s.lastErr
		}
		s.lastAttempt, s.fetching = s.clock.Now(), true
		uri := s.jwksURI
		s.mu.Unlock()

		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		set, uri, err := s.fetch(fctx, uri)

		s.mu.Lock()
		defer s.mu.Unlock()
		s.lastErr, s.fetching = err, false
		if err != nil {
			s.jwksURI = "" // discover again next time: the issuer may have moved its keys
			s.log.Warn("cannot fetch the issuer's keys", zap.String("issuer", s.issuer), zap.Error(err))
			return nil, err
		}
		s.keys, s.jwksURI = set, uri
		return nil, nil
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return errorf(ErrDiscovery, "waiting for the issuer's keys: %w", ctx.Err())
	}
}

// fetch discovers the JWKS URI unless it is known, then fetches and parses
// the JWKS.
func (s *keyStore) fetch(ctx context.Context, jwksURI string) (*keySet, string, error) {
	if jwksURI == "" {
		var err error
		if jwksURI, err = s.discover(ctx); err != nil {
			return nil, "", err
		}
	}
	s.fetches.Add(1)
	b, err := s.get(ctx, jwksURI)
	if err != nil {
		return nil, "", err
	}
	set, err := parseJWKS(b)
	if err != nil {
		return nil, "", errorf(ErrDiscovery, "%s: %v", jwksURI, err)
	}
	kids := make([]string, 0, len(set.all))
	for _, k := range set.all {
		kids = append(kids, k.kid)
	}
	s.log.Info("fetched the issuer's keys", zap.String("jwks_uri", jwksURI), zap.Strings("kids", kids), zap.Strings("skipped", set.skipped))
	return set, jwksURI, nil
}

// discover reads the issuer's discovery document, which must name this
// issuer exactly, and returns its jwks_uri.
func (s *keyStore) discover(ctx context.Context) (string, error) {
	where := strings.TrimSuffix(s.issuer, "/") + "/.well-known/openid-configuration"
	b, err := s.get(ctx, where)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", errorf(ErrDiscovery, "%s: %s", where, quote(err.Error()))
	}
	if doc.Issuer != s.issuer {
		return "", errorf(ErrDiscovery, "%s names issuer %s, want %s", where, quote(doc.Issuer), quote(s.issuer))
	}
	raw := doc.JWKSURI
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", errorf(ErrDiscovery, "%s: jwks_uri %s is not an https URL", where, quote(raw))
	}
	return raw, nil
}

// get fetches a JSON document of at most maxDocSize bytes.
func (s *keyStore) get(ctx context.Context, where string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return nil, errorf(ErrDiscovery, "GET %s: %v", where, err)
	}
	// The API server answers 406 to a JWKS request that accepts only
	// application/json: it serves the JWKS as application/jwk-set+json.
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, errorf(ErrDiscovery, "GET %s: %v", where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errorf(ErrDiscovery, "GET %s: HTTP %d", where, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocSize+1))
	switch {
	case err != nil:
		return nil, errorf(ErrDiscovery, "GET %s: %v", where, err)
	case len(b) > maxDocSize:
		return nil, errorf(ErrDiscovery, "GET %s: document larger than %d bytes", where, maxDocSize)
	}
	return b, nil
}
