package issuer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/podcreds/podcreds/metrics"
)

// DiscoveryObject is the discovery document's path beneath the issuer.
const DiscoveryObject = ".well-known/openid-configuration"

// DefaultOverlap keeps a key published for a day and an hour after the API
// server stops serving it: the longest ServiceAccount token lifetime
// podcreds asks for (24 h) plus the time IAM may cache a JWKS.
const DefaultOverlap = 25 * time.Hour

// Source is where the documents come from: the API server's own discovery
// endpoints (kube.Client's GetRaw satisfies it).
type Source interface {
	GetRaw(ctx context.Context, path string) ([]byte, error)
}

// Options configures a Publisher.
type Options struct {
	// PublicURL is the issuer URL AWS fetches from; the API server's issuer
	// must equal it.
	PublicURL string
	Source    Source
	Target    Target
	// Overlap is how long a key stays published after the API server stops
	// serving it (DefaultOverlap when zero).
	Overlap time.Duration
	// Now is the clock (time.Now when nil).
	Now     func() time.Time
	Logger  *zap.Logger
	Metrics *metrics.Issuer // may be nil
}

// Publisher syncs the published issuer documents with the API server's.
// Sync is not safe for concurrent use: one goroutine (the leader's) syncs.
type Publisher struct{ o Options }

// Result says what one sync did.
type Result struct {
	// Written lists the objects written, in order (empty when nothing
	// changed).
	Written []string
	// Keys are the kids published; Served those the API server serves now;
	// Dropped those removed after their overlap window.
	Keys, Served, Dropped []string
}

// New checks opts and returns a Publisher.
func New(o Options) (*Publisher, error) {
	if _, err := CheckPublicURL(o.PublicURL); err != nil {
		return nil, fmt.Errorf("public issuer URL: %w", err)
	}
	if o.Source == nil || o.Target == nil {
		return nil, errors.New("publisher needs a source and a target")
	}
	if o.Overlap == 0 {
		o.Overlap = DefaultOverlap
	}
	if o.Overlap < 0 {
		return nil, fmt.Errorf("overlap window %s is negative", o.Overlap)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Publisher{o: o}, nil
}

// Sync reads the API server's documents, checks them, merges the keys with
// those remembered, and writes what changed: the state object first (so a
// crash part-way never forgets a key), then the JWKS, then the discovery
// document (so a document never names keys not yet published). When any
// check fails nothing is written.
func (p *Publisher) Sync(ctx context.Context) (res Result, err error) {
	defer func() {
		if p.o.Metrics == nil {
			return
		}
		if err != nil {
			p.o.Metrics.SyncFailed()
			return
		}
		p.o.Metrics.SyncSucceeded(p.o.Now())
		p.o.Metrics.Writes.Add(float64(len(res.Written)))
		p.o.Metrics.KeysPublished.Set(float64(len(res.Keys)))
	}()

	rawDisc, err := p.o.Source.GetRaw(ctx, "/.well-known/openid-configuration")
	if err != nil {
		return res, fmt.Errorf("read the API server's discovery document (the publisher needs ClusterRole system:service-account-issuer-discovery): %w", err)
	}
	disc, jwksName, err := ParseDiscovery(rawDisc, p.o.PublicURL)
	if err != nil {
		return res, fmt.Errorf("API server's discovery document: %w", err)
	}
	rawKeys, err := p.o.Source.GetRaw(ctx, "/openid/v1/jwks")
	if err != nil {
		return res, fmt.Errorf("read the API server's JWKS (the publisher needs ClusterRole system:service-account-issuer-discovery): %w", err)
	}
	served, err := ParseJWKS(rawKeys)
	if err != nil {
		return res, fmt.Errorf("API server's JWKS at /openid/v1/jwks: %w", err)
	}

	prevState, err := p.readState(ctx)
	if err != nil {
		return res, err
	}
	var published []Key
	prevJWKS, err := p.o.Target.Get(ctx, jwksName)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return res, fmt.Errorf("read the published JWKS from %s: %w", p.o.Target, err)
	default:
		// A published JWKS we cannot parse is replaced, not merged.
		if published, err = ParseJWKS(prevJWKS); err != nil {
			p.o.Logger.Warn("the published JWKS is not valid; replacing it", zap.Error(err))
			published = nil
		}
	}

	next, dropped := merge(prevState, published, served, p.o.Now(), p.o.Overlap)
	next.Issuer = p.o.PublicURL
	keys := next.publishedKeys()
	if len(keys) == 0 { // cannot happen: served is never empty
		return res, errors.New("refusing to publish an empty JWKS")
	}
	for _, k := range keys {
		res.Keys = append(res.Keys, k.ID)
	}
	for _, k := range served {
		res.Served = append(res.Served, k.ID)
	}
	res.Dropped = dropped

	writes := []struct {
		name string
		body []byte
		prev []byte
	}{
		{StateObject, next.render(), nil},
		{jwksName, RenderJWKS(keys), prevJWKS},
		{DiscoveryObject, disc.Render(), nil},
	}
	if prevState != nil {
		writes[0].prev = prevState.render()
	}
	for i := range writes {
		w := &writes[i]
		if w.name == DiscoveryObject {
			if w.prev, err = p.o.Target.Get(ctx, w.name); err != nil && !errors.Is(err, ErrNotFound) {
				return res, fmt.Errorf("read the published discovery document from %s: %w", p.o.Target, err)
			}
		}
		if bytes.Equal(w.prev, w.body) {
			continue
		}
		if err := p.o.Target.Put(ctx, w.name, w.body); err != nil {
			return res, err
		}
		res.Written = append(res.Written, w.name)
	}
	if len(res.Written) > 0 || len(dropped) > 0 {
		p.o.Logger.Info("published", zap.String("target", p.o.Target.String()), zap.Strings("written", res.Written),
			zap.Strings("keys", res.Keys), zap.Strings("served", res.Served), zap.Strings("dropped", dropped))
	}
	return res, nil
}

func (p *Publisher) readState(ctx context.Context) (*State, error) {
	b, err := p.o.Target.Get(ctx, StateObject)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the publisher's state from %s: %w", p.o.Target, err)
	}
	return parseState(b, p.o.PublicURL)
}
