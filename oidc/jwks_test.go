package oidc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"testing"
)

func TestParseJWKS(t *testing.T) {
	rsaA, ecA := rsaSigner("rsa-a", rsaKeyA()), ecSigner("ec-a", ecKeyA())
	with := func(k map[string]any, edit func(map[string]any)) map[string]any {
		k = maps.Clone(k)
		edit(k)
		return k
	}
	enc := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name string
		keys []map[string]any
		kids []string // the usable keys' kids; nil means an error
	}{
		{"RSA and EC signing keys are both usable", []map[string]any{rsaA.jwk(), ecA.jwk()}, []string{"rsa-a", "ec-a"}},
		{"keys of other types are ignored", []map[string]any{rsaA.jwk(), {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}, {"kty": "OKP", "crv": "Ed25519", "kid": "o", "x": "AA"}}, []string{"rsa-a"}},
		{"encryption keys are ignored", []map[string]any{rsaA.jwk(), with(ecA.jwk(), func(k map[string]any) { k["use"] = "enc" })}, []string{"rsa-a"}},
		{"keys whose key_ops do not allow verify are ignored", []map[string]any{rsaA.jwk(), with(ecA.jwk(), func(k map[string]any) { k["key_ops"] = []string{"encrypt"} })}, []string{"rsa-a"}},
		{"an RSA key under 2048 bits is ignored", []map[string]any{ecA.jwk(), with(rsaA.jwk(), func(k map[string]any) { k["n"] = enc(bytes.Repeat([]byte{0xff}, 128)) })}, []string{"ec-a"}},
		{"an RSA key with an even exponent is ignored", []map[string]any{ecA.jwk(), with(rsaA.jwk(), func(k map[string]any) { k["e"] = "Ag" })}, []string{"ec-a"}},
		{"an EC key on another curve is ignored", []map[string]any{rsaA.jwk(), with(ecA.jwk(), func(k map[string]any) { k["crv"] = "P-384" })}, []string{"rsa-a"}},
		{"an EC point off the curve is ignored", []map[string]any{rsaA.jwk(), with(ecA.jwk(), func(k map[string]any) { k["y"] = enc(make([]byte, 32)) })}, []string{"rsa-a"}},
		{"an entry holding a private key is ignored", []map[string]any{rsaA.jwk(), with(ecA.jwk(), func(k map[string]any) { k["d"] = "AA" })}, []string{"rsa-a"}},
		{"an RSA key marked for ES256 is ignored", []map[string]any{ecA.jwk(), with(rsaA.jwk(), func(k map[string]any) { k["alg"] = ES256 })}, []string{"ec-a"}},
		{"every key sharing a kid is ignored", []map[string]any{rsaA.jwk(), ecA.jwk(), with(ecA.jwk(), func(k map[string]any) { k["kid"] = "rsa-a" })}, []string{"ec-a"}},
		{"a set with no usable key is an error", []map[string]any{{"kty": "oct", "k": "c2VjcmV0"}}, nil},
		{"an empty set is an error", []map[string]any{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := json.Marshal(map[string]any{"keys": tc.keys})
			if err != nil {
				t.Fatal(err)
			}
			set, err := parseJWKS(doc)
			if tc.kids == nil {
				if err == nil {
					t.Fatal("parseJWKS accepted the set")
				}
				return
			}
			if err != nil {
				t.Fatalf("parseJWKS: %v", err)
			}
			var got []string
			for _, k := range set.all {
				got = append(got, k.kid)
			}
			if len(got) != len(tc.kids) || len(set.byKid) != len(tc.kids) {
				t.Fatalf("usable kids %q, want %q", got, tc.kids)
			}
			for i := range got {
				if got[i] != tc.kids[i] || set.byKid[got[i]] == nil {
					t.Fatalf("usable kids %q, want %q", got, tc.kids)
				}
			}
		})
	}
	for _, doc := range []string{`[]`, `{"keys":null}`, `{"keys":{}}`, `{"keys":[],"keys":[]}`, `{"keys":[]} x`, `not json`} {
		t.Run("the document "+doc+" is an error", func(t *testing.T) {
			if _, err := parseJWKS([]byte(doc)); err == nil {
				t.Fatal("parseJWKS accepted it")
			}
		})
	}
}
