package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

// FuzzVerify feeds Verify arbitrary strings. It must never panic, and it
// must accept a token only if an independent check (the standard library
// alone, with the test issuer's keys) says the issuer signed it.
func FuzzVerify(f *testing.F) {
	rsaA, ecA := rsaSigner("rsa-a", rsaKeyA()), ecSigner("ec-a", ecKeyA())
	iss := newIssuer(f, rsaA, ecA)
	// No cache, so that every input goes through parsing and verification.
	v, _ := iss.verifier(f, func(o *Options) { o.CacheSize = -1 })
	if err := v.Prime(context.Background()); err != nil {
		f.Fatal(err)
	}
	good := []string{rsaA.mint(iss.url(), nil), ecA.mint(iss.url(), nil)}
	for _, tok := range good {
		p := strings.Split(tok, ".")
		f.Add(tok)
		f.Add(tok + "." + p[2])
		f.Add(p[0] + "." + p[1] + ".")
		f.Add(p[0] + "." + p[1] + "." + p[2][:len(p[2])-2])
		f.Add(seg(map[string]any{"alg": "none"}) + "." + p[1] + ".")
		f.Add(seg(map[string]any{"alg": "HS256", "kid": "rsa-a"}) + "." + p[1] + "." + p[2])
		f.Add(`{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`)
		f.Add(strings.ToUpper(tok[:1]) + tok[1:])
	}
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token)
		if err != nil {
			noToken(t, err, token)
			return
		}
		if !signedByTestKeys(token) {
			t.Fatalf("Verify accepted a token the issuer's keys did not sign: %q", token)
		}
		if c.Issuer != iss.url() {
			t.Fatalf("accepted iss %q", c.Issuer)
		}
	})
}

// signedByTestKeys is the fuzz oracle: it checks a compact JWS's signature
// with the test keys, trusting only the standard library.
func signedByTestKeys(token string) bool {
	p := strings.Split(token, ".")
	if len(p) != 3 {
		return false
	}
	hb, err := base64.RawURLEncoding.DecodeString(p[0])
	if err != nil {
		return false
	}
	var h struct{ Alg string }
	if json.Unmarshal(hb, &h) != nil {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(p[2])
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(p[0] + "." + p[1]))
	switch h.Alg {
	case RS256:
		return rsa.VerifyPKCS1v15(&rsaKeyA().PublicKey, crypto.SHA256, sum[:], sig) == nil
	case ES256:
		return len(sig) == 64 && ecdsa.Verify(&ecKeyA().PublicKey, sum[:],
			new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
	return false
}

// FuzzParseJWKS feeds parseJWKS arbitrary documents. It must never panic,
// and every key it returns must be usable and unambiguous.
func FuzzParseJWKS(f *testing.F) {
	jwks := func(keys ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		return b
	}
	rsaA, ecA := rsaSigner("rsa-a", rsaKeyA()), ecSigner("ec-a", ecKeyA())
	f.Add(jwks(rsaA.jwk(), ecA.jwk()))
	f.Add(jwks(rsaA.jwk(), rsaSigner("rsa-a", rsaKeyB()).jwk()))
	f.Add(jwks(map[string]any{"kty": "oct", "k": "c2VjcmV0"}))
	f.Add(jwks(map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`{"keys":[],"keys":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		set, err := parseJWKS(doc)
		if err != nil {
			return
		}
		if len(set.all) == 0 {
			t.Fatal("a key set without keys was accepted")
		}
		kids := map[string]bool{}
		for _, k := range set.all {
			switch {
			case (k.rsa == nil) == (k.ec == nil):
				t.Fatal("a key is neither RSA nor EC, or both")
			case k.rsa != nil && (k.rsa.N.BitLen() < minRSABits || k.rsa.N.BitLen() > maxRSABits || k.rsa.E < 3):
				t.Fatalf("a weak RSA key was accepted: %d bits, e=%d", k.rsa.N.BitLen(), k.rsa.E)
			case k.ec != nil:
				if _, err := k.ec.Bytes(); err != nil {
					t.Fatalf("an invalid EC key was accepted: %v", err)
				}
			}
			if k.hasKid {
				if kids[k.kid] {
					t.Fatalf("kid %q is ambiguous but was kept", k.kid)
				}
				kids[k.kid] = true
				if set.byKid[k.kid] != k {
					t.Fatalf("kid %q is not indexed", k.kid)
				}
			}
		}
		if len(set.byKid) != len(kids) {
			t.Fatal("the kid index holds keys that are not in the set")
		}
	})
}
