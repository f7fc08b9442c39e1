package integration

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/oidc"
)

// TestOIDCVerifierOnRealTokens runs package oidc against the API server's
// own discovery document, JWKS and TokenRequest tokens, fetched anonymously
// as an external verifier would.
func TestOIDCVerifierOnRealTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns, saName, node = "oidc-verify", "app", "node-oidc"
	sa, err := env.CreateServiceAccount(ctx, ns, saName, nil)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: ns, Name: "app-1", ServiceAccount: saName, Node: node, IP: netip.MustParseAddr("127.0.30.1")})
	if err != nil {
		t.Fatal(err)
	}
	nodeObj, err := env.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := env.AnonymousHTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(oidc.Options{Issuer: env.IssuerURL, Audience: testenv.Audience, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Prime(ctx); err != nil {
		t.Fatalf("discovery against the API server: %v", err)
	}
	token := requestToken(ctx, t, ns, saName, testenv.Audience, pod.Name, string(pod.UID))

	t.Run("a pod-bound token from TokenRequest verifies and names its pod", func(t *testing.T) {
		c, err := v.Verify(ctx, token)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		want := oidc.Claims{
			Subject:        "system:serviceaccount:" + ns + ":" + saName,
			Issuer:         env.IssuerURL,
			Namespace:      ns,
			ServiceAccount: oidc.ObjectRef{Name: saName, UID: sa.UID},
			Pod:            oidc.ObjectRef{Name: pod.Name, UID: pod.UID},
			Node:           oidc.ObjectRef{Name: node, UID: nodeObj.UID},
		}
		if c.Subject != want.Subject || c.Issuer != want.Issuer || c.Namespace != want.Namespace ||
			c.ServiceAccount != want.ServiceAccount || c.Pod != want.Pod || c.Node != want.Node {
			t.Fatalf("claims\n got %+v\nwant %+v", *c, want)
		}
		if left := time.Until(c.Expiry); left < 9*time.Minute || left > 11*time.Minute {
			t.Errorf("token expires in %s, asked for 10m", left)
		}
	})

	t.Run("a token for another audience is refused with ErrAudience", func(t *testing.T) {
		other := requestToken(ctx, t, ns, saName, "not-sts.example", pod.Name, string(pod.UID))
		if _, err := v.Verify(ctx, other); !errors.Is(err, oidc.ErrAudience) {
			t.Fatalf("Verify: %v, want ErrAudience", err)
		}
	})

	t.Run("a token re-signed with another key under the same kid is refused with ErrSignature", func(t *testing.T) {
		if _, err := v.Verify(ctx, resign(t, token)); !errors.Is(err, oidc.ErrSignature) {
			t.Fatalf("Verify: %v, want ErrSignature", err)
		}
	})

	if s := v.Stats(); s.KeyFetches != 1 {
		t.Errorf("the JWKS was fetched %d times, want 1: every token named a known kid", s.KeyFetches)
	}
}
