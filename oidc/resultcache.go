package oidc

import (
	"container/list"
	"sync"
	"time"
)

// resultCache remembers verified tokens by the SHA-256 of the token, so
// that the token itself is never kept. An entry lives until its token's exp
// and no longer (the leeway Verify allows is not extended to cached
// results). When the cache is full, expired entries go first, then the
// oldest.
//
// Concurrency: mu guards everything. Lookups take only the read lock and
// change nothing (eviction is by insertion order, not by use), so hits on
// the hot path never contend with each other.
type resultCache struct {
	max int

	mu      sync.RWMutex
	entries map[[32]byte]*list.Element // of *cached
	order   *list.List                 // oldest first
	// minExpiry is no later than the earliest exp in the cache (zero when
	// unknown): a sweep before it cannot free anything, so a full cache
	// under a stream of new tokens does not scan on every insert.
	minExpiry time.Time
}

type cached struct {
	key    [32]byte
	claims *Claims // never modified once stored; callers get clones
}

func newResultCache(max int) *resultCache {
	return &resultCache{max: max, entries: map[[32]byte]*list.Element{}, order: list.New()}
}

// get returns the claims of a verified token that has not expired at now.
func (c *resultCache) get(key [32]byte, now time.Time) (*Claims, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	claims := e.Value.(*cached).claims
	if !now.Before(claims.Expiry) {
		return nil, false
	}
	return claims, true
}

// put stores the claims of a verified token, unless it has expired at now
// (as a token accepted within the leeway has).
func (c *resultCache) put(key [32]byte, claims *Claims, now time.Time) {
	if c.max <= 0 || !now.Before(claims.Expiry) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return
	}
	if len(c.entries) >= c.max && !now.Before(c.minExpiry) {
		c.sweepLocked(now)
	}
	if len(c.entries) >= c.max {
		oldest := c.order.Front()
		delete(c.entries, oldest.Value.(*cached).key)
		c.order.Remove(oldest)
	}
	c.entries[key] = c.order.PushBack(&cached{key: key, claims: claims})
	if c.minExpiry.IsZero() || claims.Expiry.Before(c.minExpiry) {
		c.minExpiry = claims.Expiry
	}
}

// sweepLocked drops every entry expired at now and recomputes minExpiry.
// Callers hold mu.
func (c *resultCache) sweepLocked(now time.Time) {
	c.minExpiry = time.Time{}
	for e := c.order.Front(); e != nil; {
		next := e.Next()
		exp := e.Value.(*cached).claims.Expiry
		switch {
		case !now.Before(exp):
			delete(c.entries, e.Value.(*cached).key)
			c.order.Remove(e)
		case c.minExpiry.IsZero() || exp.Before(c.minExpiry):
			c.minExpiry = exp
		}
		e = next
	}
}

func (c *resultCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
