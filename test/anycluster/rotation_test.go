package anycluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestZRotation (named to run last: it restarts the API server) rotates the
// signing key as docs/any-cluster.md says: restart kube-apiserver with a new
// signing key while it still accepts the old one, publish both, then drop
// the old key from the API server. With a shortened overlap window the old
// key stays published for the window, across publisher restarts (every
// `publish --once` is a new process), and then goes, after which STS
// refuses a token signed with it.
func TestZRotation(t *testing.T) {
	published(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const window = 40 * time.Second
	overlap := "--overlap=" + window.String()
	publishOnce(t, overlap)

	oldToken := token(t, "rotation", "app")
	oldKid := kidOf(t, oldToken)
	if _, err := env.RotateSigningKey(ctx, true); err != nil {
		t.Fatal(err)
	}
	newToken := token(t, "rotation", "app")
	newKid := kidOf(t, newToken)
	if oldKid == newKid {
		t.Fatal("the new token is signed with the old key")
	}
	if served := servedKids(t); !contains(served, oldKid) || !contains(served, newKid) {
		t.Fatalf("the API server serves %v during the rotation, want both %s and %s", served, oldKid, newKid)
	}
	publishOnce(t, overlap)
	if got := publishedKids(t); !contains(got, oldKid) || !contains(got, newKid) {
		t.Fatalf("published %v during the rotation, want both keys", got)
	}
	// A fresh STS (nothing cached) exchanges tokens signed by either key.
	if err := env.StartPublicSTS(ctx); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"old": oldToken, "new": newToken} {
		if err := env.STSAcceptsToken(ctx, tok); err != nil {
			t.Fatalf("during the rotation STS refused a token signed with the %s key: %v", name, err)
		}
	}

	// The last step: the API server drops the old key.
	if err := env.DropOldKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if served := servedKids(t); contains(served, oldKid) {
		t.Fatalf("the API server still serves the old key: %v", served)
	}
	gone := time.Now()
	publishOnce(t, overlap)
	// Within the window, every restarted publisher keeps the old key.
	for time.Since(gone) < window-10*time.Second {
		publishOnce(t, overlap)
		if got := publishedKids(t); !contains(got, oldKid) {
			t.Fatalf("%s after the API server dropped it (window %s), the old key was unpublished: %v", time.Since(gone).Round(time.Second), window, got)
		}
		time.Sleep(5 * time.Second)
	}
	if err := env.StartPublicSTS(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.STSAcceptsToken(ctx, oldToken); err != nil {
		t.Fatalf("within the window STS refused a token signed with the old key: %v", err)
	}

	// After the window the old key goes; the new one stays.
	time.Sleep(time.Until(gone.Add(window + 2*time.Second)))
	r := publishOnce(t, overlap)
	if !strings.Contains(r.stdout, "dropped ["+oldKid+"]") {
		t.Fatalf("publish after the window: %s", r.stdout)
	}
	if got := publishedKids(t); contains(got, oldKid) || !contains(got, newKid) {
		t.Fatalf("after the window published %v, want only %s", got, newKid)
	}
	// A fresh STS (IAM's JWKS cache having expired) refuses the old key's
	// token and accepts the new one's.
	if err := env.StartPublicSTS(ctx); err != nil {
		t.Fatal(err)
	}
	if err := env.STSAcceptsToken(ctx, oldToken); err == nil {
		t.Fatal("after the window STS still exchanged a token signed with the dropped key")
	} else {
		t.Logf("STS refused the old key's token as expected: %v", err)
	}
	if err := env.STSAcceptsToken(ctx, newToken); err != nil {
		t.Fatalf("STS refused the new key's token: %v", err)
	}
}
