package oidc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestStricterThanGoJOSE shows, for each rule podcreds keeps on top of
// go-jose, a token that go-jose alone accepts and Verify refuses. "go-jose
// alone" is what its documentation shows a relying party doing: the issuer's
// JWKS decoded into a jose.JSONWebKeySet, jwt.ParseSigned under the same
// allow-list, Claims with that set, and ValidateWithLeeway with the same
// issuer, audience, time and leeway. If go-jose starts refusing one of these
// tokens itself, its row fails and our own rule can go.
func TestStricterThanGoJOSE(t *testing.T) {
	rsaA, ecA := rsaSigner("rsa-a", rsaKeyA()), ecSigner("ec-a", ecKeyA())
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	jwkWith := func(s signer, edit func(map[string]any)) map[string]any {
		k := s.jwk()
		edit(k)
		return k
	}
	header := func(s signer, edit func(h map[string]any)) func(*testIssuer) string {
		return func(iss *testIssuer) string { return s.mint(iss.url(), func(h, _ map[string]any) { edit(h) }) }
	}
	tests := []struct {
		name  string
		keys  []map[string]any // the issuer's JWKS; nil: rsa-a and ec-a
		token func(iss *testIssuer) string
		// library checks the token with go-jose alone; nil: jwtAlone.
		library func(iss *testIssuer, token string, set *jose.JSONWebKeySet) error
		want    error
	}{
		{name: "a crit header (b64, which go-jose supports) is refused",
			token: header(rsaA, func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = true }), want: ErrMalformed},
		{name: "a typ other than JWT is refused",
			token: header(rsaA, func(h map[string]any) { h["typ"] = "at+jwt" }), want: ErrMalformed},
		{name: "a cty header (a nested token) is refused",
			token: header(rsaA, func(h map[string]any) { h["cty"] = "JWT" }), want: ErrMalformed},
		{name: "a second spelling of the signature (stray bits in its last character) is refused",
			token: func(iss *testIssuer) string { return respell(rsaA.mint(iss.url(), nil)) }, want: ErrMalformed},
		{name: "a token over MaxTokenSize is refused before parsing",
			token: func(iss *testIssuer) string {
				return rsaA.mint(iss.url(), func(_, c map[string]any) { c["pad"] = strings.Repeat("x", MaxTokenSize) })
			}, want: ErrMalformed},
		{name: "a token without exp is refused",
			token: func(iss *testIssuer) string {
				return rsaA.mint(iss.url(), func(_, c map[string]any) { delete(c, "exp") })
			}, want: ErrExpired},
		{name: "a kid shared by two keys in the JWKS is refused, not resolved to the first",
			keys:  []map[string]any{rsaA.jwk(), rsaSigner("rsa-a", rsaKeyB()).jwk(), ecA.jwk()},
			token: func(iss *testIssuer) string { return rsaA.mint(iss.url(), nil) }, want: ErrUnknownKey},
		{name: "a key whose JWK names another algorithm is not used",
			keys:  []map[string]any{jwkWith(rsaA, func(k map[string]any) { k["alg"] = "RS512" }), ecA.jwk()},
			token: func(iss *testIssuer) string { return rsaA.mint(iss.url(), nil) }, want: ErrUnknownKey},
		{name: "an encryption key is not used to verify",
			keys:  []map[string]any{jwkWith(rsaA, func(k map[string]any) { k["use"] = "enc" }), ecA.jwk()},
			token: func(iss *testIssuer) string { return rsaA.mint(iss.url(), nil) }, want: ErrUnknownKey},
		{name: "an RSA key under 2048 bits is not used",
			keys:  []map[string]any{rsaSigner("weak", weak).jwk(), ecA.jwk()},
			token: func(iss *testIssuer) string { return rsaSigner("weak", weak).mint(iss.url(), nil) }, want: ErrUnknownKey},
		{name: "the JWS JSON serialization is refused (go-jose's general parser takes it)",
			token: func(iss *testIssuer) string {
				p := strings.Split(rsaA.mint(iss.url(), nil), ".")
				return `{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`
			},
			library: func(iss *testIssuer, token string, set *jose.JSONWebKeySet) error {
				sig, err := jose.ParseSignedJSON(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
				if err != nil {
					return err
				}
				_, err = sig.Verify(set)
				return err
			}, want: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss := newIssuer(t)
			iss.set(func(i *testIssuer) { i.keys = tc.keys })
			if tc.keys == nil {
				iss.setKeys(rsaA, ecA)
			}
			token := tc.token(iss)
			library := tc.library
			if library == nil {
				library = jwtAlone
			}
			if err := library(iss, token, iss.keySet(t)); err != nil {
				t.Fatalf("go-jose alone refuses this token too (%v): the rule is no longer ours to keep", err)
			}
			v, _ := iss.verifier(t, nil)
			if _, err := v.Verify(context.Background(), token); !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

// jwtAlone verifies token as go-jose's jwt package documents it.
func jwtAlone(iss *testIssuer, token string, set *jose.JSONWebKeySet) error {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return err
	}
	var c jwt.Claims
	if err := tok.Claims(set, &c); err != nil {
		return err
	}
	return c.ValidateWithLeeway(jwt.Expected{Issuer: iss.url(), AnyAudience: jwt.Audience{testAudience}, Time: testNow}, DefaultLeeway)
}

// keySet decodes the issuer's JWKS as a go-jose user would.
func (iss *testIssuer) keySet(t *testing.T) *jose.JSONWebKeySet {
	t.Helper()
	iss.mu.Lock()
	b, err := json.Marshal(map[string]any{"keys": iss.keys})
	iss.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("go-jose cannot decode the test JWKS: %v", err)
	}
	return &set
}

// respell changes the stray low bits of the token's last character: the
// signature decodes to the same bytes, but the token is spelled differently.
func respell(token string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	return token[:len(token)-1] + string(alphabet[last^1])
}
