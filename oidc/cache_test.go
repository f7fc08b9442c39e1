package oidc

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestResultCache(t *testing.T) {
	rsaA := rsaSigner("rsa-a", rsaKeyA())
	ctx := context.Background()

	t.Run("a repeated token is verified once and then answered from the cache", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, _ := iss.verifier(t, nil)
		tok := rsaA.mint(iss.url(), nil)
		for range 5 {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		}
		if s := v.Stats(); s.SignatureChecks != 1 || s.CacheHits != 4 || s.CacheMisses != 1 || s.CacheEntries != 1 {
			t.Fatalf("stats %+v, want 1 signature check, 4 hits, 1 miss, 1 entry", s)
		}
	})

	t.Run("a cached token is not served past its exp and refused past the leeway", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, clk := iss.verifier(t, nil)
		tok := rsaA.mint(iss.url(), nil)
		exp := testNow.Add(10 * time.Minute)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		clk.SetTime(exp.Add(-time.Second))
		if _, err := v.Verify(ctx, tok); err != nil || v.Stats().CacheHits != 1 {
			t.Fatalf("one second before exp: %v, stats %+v; want a cache hit", err, v.Stats())
		}
		clk.SetTime(exp)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("at exp, within the leeway: %v", err)
		}
		if s := v.Stats(); s.CacheHits != 1 || s.SignatureChecks != 2 {
			t.Fatalf("at exp: stats %+v, want no new hit and a second signature check", s)
		}
		clk.SetTime(exp.Add(DefaultLeeway))
		if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrExpired) {
			t.Fatalf("past exp and leeway: %v, want ErrExpired", err)
		}
		if s := v.Stats(); s.CacheHits != 1 {
			t.Fatalf("past exp: stats %+v, want no new hit", s)
		}
	})

	t.Run("a token accepted within the leeway after exp is not cached", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, _ := iss.verifier(t, nil)
		tok := rsaA.mint(iss.url(), func(_, c map[string]any) { c["exp"] = testNow.Add(-time.Second).Unix() })
		for range 2 {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		}
		if s := v.Stats(); s.CacheHits != 0 || s.CacheEntries != 0 {
			t.Fatalf("stats %+v, want nothing cached", s)
		}
	})

	t.Run("callers get their own copy of cached claims", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, _ := iss.verifier(t, nil)
		tok := rsaA.mint(iss.url(), nil)
		c1, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		c1.Audience[0], c1.Pod.Name = "changed", "changed"
		c2, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if c2.Audience[0] != testAudience || c2.Pod.Name != "app-1" {
			t.Fatalf("a caller's change leaked into the cache: %+v", c2)
		}
	})

	t.Run("a negative CacheSize disables the cache", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, _ := iss.verifier(t, func(o *Options) { o.CacheSize = -1 })
		tok := rsaA.mint(iss.url(), nil)
		for range 2 {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if s := v.Stats(); s.SignatureChecks != 2 || s.CacheEntries != 0 {
			t.Fatalf("stats %+v, want 2 signature checks and nothing cached", s)
		}
	})
}

func TestResultCacheBounds(t *testing.T) {
	key := func(b byte) [32]byte { return [32]byte{b} }
	expiring := func(d time.Duration) *Claims { return &Claims{Expiry: testNow.Add(d)} }
	has := func(c *resultCache, now time.Time, keys ...byte) bool {
		for _, k := range keys {
			if _, ok := c.get(key(k), now); !ok {
				return false
			}
		}
		return true
	}

	t.Run("a full cache drops expired entries before live ones", func(t *testing.T) {
		c := newResultCache(3)
		c.put(key(1), expiring(time.Hour), testNow)
		c.put(key(2), expiring(time.Minute), testNow)
		c.put(key(3), expiring(time.Hour), testNow)
		later := testNow.Add(2 * time.Minute)
		c.put(key(4), expiring(time.Hour), later)
		if c.len() != 3 || !has(c, later, 1, 3, 4) {
			t.Fatalf("want entries 1, 3, 4 after the expired 2 was dropped; have %d", c.len())
		}
	})

	t.Run("a full cache of live entries drops the oldest", func(t *testing.T) {
		c := newResultCache(3)
		for k := byte(1); k <= 5; k++ {
			c.put(key(k), expiring(time.Hour), testNow)
		}
		if c.len() != 3 || !has(c, testNow, 3, 4, 5) || has(c, testNow, 1) || has(c, testNow, 2) {
			t.Fatalf("want entries 3, 4, 5; have %d", c.len())
		}
	})

	t.Run("an entry is never served at or after its exp", func(t *testing.T) {
		c := newResultCache(3)
		c.put(key(1), expiring(time.Minute), testNow)
		if !has(c, testNow.Add(time.Minute-time.Nanosecond), 1) || has(c, testNow.Add(time.Minute), 1) {
			t.Fatal("entry served past its exp, or not before it")
		}
	})
}

// BenchmarkVerifyCacheHit is the hot path: a token presented again.
func BenchmarkVerifyCacheHit(b *testing.B) {
	rsaA := rsaSigner("rsa-a", rsaKeyA())
	iss := newIssuer(b, rsaA)
	v, _ := iss.verifier(b, nil)
	tok := rsaA.mint(iss.url(), nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyMiss is a full verification (parse, claims, RS256).
func BenchmarkVerifyMiss(b *testing.B) {
	rsaA := rsaSigner("rsa-a", rsaKeyA())
	iss := newIssuer(b, rsaA)
	v, _ := iss.verifier(b, func(o *Options) { o.CacheSize = -1 })
	tok := rsaA.mint(iss.url(), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
