package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestKeyRefetch(t *testing.T) {
	rsaA, rsaB := rsaSigner("rsa-a", rsaKeyA()), rsaSigner("rsa-b", rsaKeyB())
	ctx := context.Background()

	t.Run("the first Verify discovers the issuer and fetches its keys once", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, _ := iss.verifier(t, nil)
		for range 3 {
			if _, err := v.Verify(ctx, rsaA.mint(iss.url(), nil)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		}
		if d, j := iss.discovery.Load(), iss.jwksGets.Load(); d != 1 || j != 1 {
			t.Fatalf("discovery fetched %d times, JWKS %d times; want 1 and 1", d, j)
		}
	})

	t.Run("an unknown kid makes the verifier fetch the JWKS again, then refuses", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, clk := iss.verifier(t, nil)
		mustPrime(t, v)
		clk.SetTime(testNow.Add(DefaultRefetchInterval))
		_, err := v.Verify(ctx, rsaSigner("rsa-z", rsaKeyA()).mint(iss.url(), nil))
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Verify: %v, want ErrUnknownKey", err)
		}
		if n := iss.jwksGets.Load(); n != 2 {
			t.Fatalf("JWKS fetched %d times, want 2 (prime and refetch)", n)
		}
		if n := iss.discovery.Load(); n != 1 {
			t.Fatalf("discovery fetched %d times, want 1: a refetch needs only the JWKS", n)
		}
	})

	t.Run("a key rotated in is accepted after a refetch, a key rotated out is refused", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, clk := iss.verifier(t, nil)
		mustPrime(t, v)
		iss.setKeys(rsaB)
		if _, err := v.Verify(ctx, rsaB.mint(iss.url(), nil)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("within the refetch interval of the last fetch: %v, want ErrUnknownKey", err)
		}
		clk.SetTime(testNow.Add(DefaultRefetchInterval))
		if _, err := v.Verify(ctx, rsaB.mint(iss.url(), nil)); err != nil {
			t.Fatalf("after the interval: %v", err)
		}
		if _, err := v.Verify(ctx, rsaA.mint(iss.url(), nil)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("token of the removed key: %v, want ErrUnknownKey", err)
		}
		if n := iss.jwksGets.Load(); n != 2 {
			t.Fatalf("JWKS fetched %d times, want 2", n)
		}
	})

	t.Run("a burst of unknown kids fetches the JWKS at most once per interval", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, clk := iss.verifier(t, nil)
		mustPrime(t, v)
		burst := func() {
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Go(func() {
					tok := rsaSigner(fmt.Sprintf("unknown-%d", i), rsaKeyA()).mint(iss.url(), nil)
					if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
						t.Errorf("Verify: %v, want ErrUnknownKey", err)
					}
				})
			}
			wg.Wait()
		}
		burst() // within the interval of Prime's fetch: no refetch
		if n := iss.jwksGets.Load(); n != 1 {
			t.Fatalf("JWKS fetched %d times, want 1", n)
		}
		clk.SetTime(testNow.Add(DefaultRefetchInterval))
		burst()
		burst()
		if n := iss.jwksGets.Load(); n != 2 {
			t.Fatalf("JWKS fetched %d times, want 2", n)
		}
	})

	t.Run("concurrent callers waiting for a rotated key share one fetch", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		v, clk := iss.verifier(t, nil)
		mustPrime(t, v)
		iss.setKeys(rsaA, rsaB)
		clk.SetTime(testNow.Add(time.Hour))
		tok := rsaB.mint(iss.url(), func(_, c map[string]any) { c["exp"] = testNow.Add(2 * time.Hour).Unix() })
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, err := v.Verify(ctx, tok); err != nil {
					t.Errorf("Verify: %v", err)
				}
			})
		}
		wg.Wait()
		if n := iss.jwksGets.Load(); n != 2 {
			t.Fatalf("JWKS fetched %d times, want 2", n)
		}
	})
}

func TestDiscoveryFailures(t *testing.T) {
	rsaA := rsaSigner("rsa-a", rsaKeyA())
	ctx := context.Background()
	t.Run("a discovery document naming another issuer is refused", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		iss.set(func(i *testIssuer) { i.docIssuer = "https://evil.example" })
		v, _ := iss.verifier(t, nil)
		if err := v.Prime(ctx); !errors.Is(err, ErrDiscovery) {
			t.Fatalf("Prime: %v, want ErrDiscovery", err)
		}
		if _, err := v.Verify(ctx, rsaA.mint(iss.url(), nil)); !errors.Is(err, ErrDiscovery) {
			t.Fatalf("Verify: %v, want ErrDiscovery", err)
		}
		if n := iss.jwksGets.Load(); n != 0 {
			t.Fatalf("JWKS fetched %d times after a bad discovery document", n)
		}
	})
	t.Run("a discovery document naming the issuer with a trailing slash is refused", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		iss.set(func(i *testIssuer) { i.docIssuer = i.srv.URL + "/" })
		v, _ := iss.verifier(t, nil)
		if err := v.Prime(ctx); !errors.Is(err, ErrDiscovery) {
			t.Fatalf("Prime: %v, want ErrDiscovery", err)
		}
	})
	t.Run("an unreachable issuer is asked again only after the interval, and recovers", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		iss.set(func(i *testIssuer) { i.status = http.StatusServiceUnavailable })
		v, clk := iss.verifier(t, nil)
		tok := rsaA.mint(iss.url(), func(_, c map[string]any) { c["exp"] = testNow.Add(time.Hour).Unix() })
		for range 3 {
			if _, err := v.Verify(ctx, tok); !errors.Is(err, ErrDiscovery) {
				t.Fatalf("Verify: %v, want ErrDiscovery", err)
			}
		}
		if n := iss.discovery.Load(); n != 1 {
			t.Fatalf("discovery asked %d times within the interval, want 1", n)
		}
		iss.set(func(i *testIssuer) { i.status = 0 })
		clk.SetTime(testNow.Add(DefaultRefetchInterval))
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify after the issuer recovered: %v", err)
		}
	})
	t.Run("a caller whose context ends stops waiting without cancelling the fetch", func(t *testing.T) {
		iss := newIssuer(t, rsaA)
		release := make(chan struct{})
		entered := make(chan struct{})
		var once sync.Once
		iss.set(func(i *testIssuer) {
			i.gate = func() {
				once.Do(func() { close(entered) })
				<-release
			}
		})
		v, _ := iss.verifier(t, nil)
		tok := rsaA.mint(iss.url(), nil)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := v.Verify(cctx, tok)
			done <- err
		}()
		<-entered
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || !errors.Is(err, ErrDiscovery) {
			t.Fatalf("Verify: %v, want ErrDiscovery and context.Canceled", err)
		}
		close(release)
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify after the shared fetch went on: %v", err)
		}
		if n := iss.discovery.Load(); n != 1 {
			t.Fatalf("discovery asked %d times, want 1: the cancelled caller's fetch must finish for the others", n)
		}
	})
}
