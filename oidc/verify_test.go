package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerifyAcceptsIssuerTokens(t *testing.T) {
	rsaA, ecA := rsaSigner("rsa-a", rsaKeyA()), ecSigner("ec-a", ecKeyA())
	iss := newIssuer(t, rsaA, ecA)
	v, _ := iss.verifier(t, nil)
	tests := []struct {
		name  string
		token string
	}{
		{"an RS256 token signed by the issuer verifies", rsaA.mint(iss.url(), nil)},
		{"an ES256 token signed by the issuer verifies", ecA.mint(iss.url(), nil)},
		{"a token expired less than the leeway ago verifies", rsaA.mint(iss.url(), func(_, c map[string]any) {
			c["exp"] = testNow.Add(-30 * time.Second).Unix()
		})},
		{"a token valid in less than the leeway verifies", rsaA.mint(iss.url(), func(_, c map[string]any) {
			c["nbf"] = testNow.Add(30 * time.Second).Unix()
		})},
		{"a token whose aud is one string verifies", rsaA.mint(iss.url(), func(_, c map[string]any) { c["aud"] = testAudience })},
		{"a token with typ JWT and fractional dates verifies", ecA.mint(iss.url(), func(h, c map[string]any) {
			h["typ"] = "JWT"
			c["exp"] = float64(testNow.Add(time.Minute).Unix()) + 0.5
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Claims{
				Subject: "system:serviceaccount:team-a:app", Issuer: iss.url(), Namespace: "team-a",
				ServiceAccount: ObjectRef{"app", "sa-uid"}, Pod: ObjectRef{"app-1", "pod-uid"}, Node: ObjectRef{"node-a", "node-uid"},
			}
			if c.Subject != want.Subject || c.Issuer != want.Issuer || c.Namespace != want.Namespace ||
				c.ServiceAccount != want.ServiceAccount || c.Pod != want.Pod || c.Node != want.Node {
				t.Errorf("claims = %+v, want %+v", c, want)
			}
			if c.Expiry.IsZero() || !c.IssuedAt.Equal(testNow) {
				t.Errorf("exp %v iat %v, want both set", c.Expiry, c.IssuedAt)
			}
		})
	}
}

func TestVerifyRefusesBadTokens(t *testing.T) {
	rsaA, ecA := rsaSigner("rsa-a", rsaKeyA()), ecSigner("ec-a", ecKeyA())
	iss := newIssuer(t, rsaA, ecA)
	v, _ := iss.verifier(t, nil)
	good := rsaA.mint(iss.url(), nil)
	parts := strings.Split(good, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKeyA().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	// hs256 "signs" with the issuer's public key as the HMAC secret: the
	// classic algorithm-confusion forgery.
	hs256 := func(secret []byte) string {
		input := seg(map[string]any{"alg": "HS256", "kid": "rsa-a", "typ": "JWT"}) + "." + parts[1]
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	withClaims := func(s signer, edit func(c map[string]any)) string {
		return s.mint(iss.url(), func(_, c map[string]any) { edit(c) })
	}
	withHeader := func(s signer, edit func(h map[string]any)) string {
		return s.mint(iss.url(), func(h, _ map[string]any) { edit(h) })
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"an RS256 token signed by another key under the issuer's kid is refused", rsaSigner("rsa-a", rsaKeyB()).mint(iss.url(), nil), ErrSignature},
		{"an ES256 token signed by another key under the issuer's kid is refused", ecSigner("ec-a", ecKeyB()).mint(iss.url(), nil), ErrSignature},
		{"a token with its claims changed after signing is refused", parts[0] + "." + seg(claimsFor("x")) + "." + parts[2], ErrIssuer},
		{"a token with a changed subject after signing is refused", parts[0] + "." + seg(func() map[string]any {
			c := claimsFor(iss.url())
			c["sub"] = "system:serviceaccount:kube-system:admin"
			return c
		}()) + "." + parts[2], ErrSignature},
		{"a token from another issuer is refused", withClaims(rsaA, func(c map[string]any) { c["iss"] = "https://evil.example" }), ErrIssuer},
		{"a token without iss is refused", withClaims(rsaA, func(c map[string]any) { delete(c, "iss") }), ErrIssuer},
		{"a token for another audience is refused", withClaims(rsaA, func(c map[string]any) { c["aud"] = []string{"sts.amazonaws.com"} }), ErrAudience},
		{"a token without aud is refused", withClaims(rsaA, func(c map[string]any) { delete(c, "aud") }), ErrAudience},
		{"a token expired longer than the leeway ago is refused", withClaims(rsaA, func(c map[string]any) { c["exp"] = testNow.Add(-61 * time.Second).Unix() }), ErrExpired},
		{"a token without exp is refused", withClaims(rsaA, func(c map[string]any) { delete(c, "exp") }), ErrExpired},
		{"a token valid only after more than the leeway is refused", withClaims(rsaA, func(c map[string]any) { c["nbf"] = testNow.Add(61 * time.Second).Unix() }), ErrNotYetValid},
		{"a token whose exp is a string is refused", withClaims(rsaA, func(c map[string]any) { c["exp"] = "2099-01-01" }), ErrMalformed},
		{"a token whose pod claim is not an object is refused", withClaims(rsaA, func(c map[string]any) { c["kubernetes.io"] = map[string]any{"pod": "app-1"} }), ErrMalformed},
		{"an alg none token without signature is refused", seg(map[string]any{"alg": "none"}) + "." + parts[1] + ".", ErrAlgorithm},
		{"an alg none token with the real signature is refused", seg(map[string]any{"alg": "none", "kid": "rsa-a"}) + "." + parts[1] + "." + parts[2], ErrAlgorithm},
		{"an HS256 token keyed with the issuer's PEM public key is refused", hs256(pubPEM), ErrAlgorithm},
		{"an HS256 token keyed with the issuer's DER public key is refused", hs256(pubDER), ErrAlgorithm},
		{"an RS384 token is refused", withHeader(rsaA, func(h map[string]any) { h["alg"] = "RS384" }), ErrAlgorithm},
		{"an ES256 token naming an RSA key is refused", withHeader(ecSigner("rsa-a", ecKeyA()), func(map[string]any) {}), ErrAlgorithm},
		{"an RS256 token naming an EC key is refused", withHeader(rsaSigner("ec-a", rsaKeyA()), func(map[string]any) {}), ErrAlgorithm},
		{"an ES256 signature in ASN.1 form is refused", asn1Signed(t, ecA, iss.url()), ErrSignature},
		{"a token with two signatures in a row is refused", good + "." + parts[2], ErrMalformed},
		{"a JWE-shaped token of five parts is refused", good + ".a.b", ErrMalformed},
		{"a JWS in general JSON serialization is refused",
			`{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"},{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`, ErrMalformed},
		{"a JWS in flattened JSON serialization is refused",
			`{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, ErrMalformed},
		{"a token larger than MaxTokenSize is refused", parts[0] + "." + strings.Repeat("A", MaxTokenSize) + "." + parts[2], ErrMalformed},
		{"an empty token is refused", "", ErrMalformed},
		{"a token with a crit header is refused", withHeader(rsaA, func(h map[string]any) { h["crit"] = []string{"exp"} }), ErrMalformed},
		{"a token with a typ other than JWT is refused", withHeader(rsaA, func(h map[string]any) { h["typ"] = "at+jwt" }), ErrMalformed},
		{"a token with a duplicate alg member is refused",
			base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","alg":"RS256","kid":"rsa-a"}`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"a token with padded base64 is refused", parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"a token with a Bearer prefix is refused", "Bearer " + good, ErrMalformed},
		{"a token naming an unknown kid is refused", withHeader(rsaSigner("rsa-z", rsaKeyA()), func(map[string]any) {}), ErrUnknownKey},
		{"a token without kid is refused while the issuer has several keys", withHeader(rsaA, func(h map[string]any) { delete(h, "kid") }), ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %+v, %v; want %v", c, err, tc.want)
			}
			noToken(t, err, tc.token)
		})
	}
}

func TestVerifyKeySelection(t *testing.T) {
	ecA := ecSigner("ec-a", ecKeyA())
	t.Run("a token without kid verifies when the issuer publishes one key", func(t *testing.T) {
		iss := newIssuer(t, ecA)
		v, _ := iss.verifier(t, nil)
		tok := ecA.mint(iss.url(), func(h, _ map[string]any) { delete(h, "kid") })
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("an algorithm left out of AllowedAlgs is refused", func(t *testing.T) {
		iss := newIssuer(t, ecA)
		v, _ := iss.verifier(t, func(o *Options) { o.AllowedAlgs = []string{RS256} })
		if _, err := v.Verify(context.Background(), ecA.mint(iss.url(), nil)); !errors.Is(err, ErrAlgorithm) {
			t.Fatalf("Verify: %v, want ErrAlgorithm", err)
		}
	})
	t.Run("a key whose JWK names an algorithm not implemented is not used", func(t *testing.T) {
		rsaA := rsaSigner("rsa-a", rsaKeyA())
		iss := newIssuer(t)
		jwk := rsaA.jwk()
		jwk["alg"] = "RS512" // not implemented: the key is skipped altogether
		iss.set(func(i *testIssuer) { i.keys = []map[string]any{jwk, ecA.jwk()} })
		v, _ := iss.verifier(t, nil)
		if _, err := v.Verify(context.Background(), rsaA.mint(iss.url(), nil)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Verify: %v, want ErrUnknownKey", err)
		}
	})
}

func TestNewRefusesBadOptions(t *testing.T) {
	good := Options{Issuer: "https://issuer.example", Audience: testAudience}
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{"an http issuer is refused", func(o *Options) { o.Issuer = "http://issuer.example" }},
		{"an issuer that is not a URL is refused", func(o *Options) { o.Issuer = "kubernetes/serviceaccount" }},
		{"an issuer with a query is refused", func(o *Options) { o.Issuer = "https://issuer.example/?a=b" }},
		{"an empty audience is refused", func(o *Options) { o.Audience = "" }},
		{"HS256 cannot be allowed", func(o *Options) { o.AllowedAlgs = []string{RS256, "HS256"} }},
		{"none cannot be allowed", func(o *Options) { o.AllowedAlgs = []string{"none"} }},
		{"a negative leeway is refused", func(o *Options) { o.Leeway = -time.Second }},
		{"a negative refetch interval is refused", func(o *Options) { o.RefetchInterval = -time.Second }},
	}
	if _, err := New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := good
			tc.edit(&opts)
			if _, err := New(opts); err == nil {
				t.Fatal("New accepted the options")
			}
		})
	}
}

// asn1Signed mints an ES256 token whose signature is ASN.1 DER, as some
// libraries produce it by mistake, instead of JOSE's r||s.
func asn1Signed(t *testing.T, s signer, iss string) string {
	t.Helper()
	input := seg(map[string]any{"alg": ES256, "kid": s.kid}) + "." + seg(claimsFor(iss))
	sum := sha256.Sum256([]byte(input))
	sig, err := ecdsa.SignASN1(rand.Reader, s.ec, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
