package issuer

import (
	"encoding/json"
	"testing"
)

// FuzzParseJWKS feeds the parser what a broken or hostile API server (or a
// tampered published object) could send: it must never panic, and whatever
// it accepts must render to a JWKS it accepts again, without private members.
func FuzzParseJWKS(f *testing.F) {
	f.Add(jwks(f, "a", "b"))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":"AQ","y":"AQ"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB","d":"AQ"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseJWKS(b)
		if err != nil {
			return
		}
		again, err := ParseJWKS(RenderJWKS(keys))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("rendered JWKS of %d keys parses as %d keys, %v", len(keys), len(again), err)
		}
		for _, k := range again {
			if _, ok := k.Members["d"]; ok {
				t.Fatal("a private member survived")
			}
		}
	})
}

// FuzzParseDiscovery: never panics; an accepted document names exactly the
// configured issuer and a JWKS path that cannot leave the target.
func FuzzParseDiscovery(f *testing.F) {
	f.Add(discovery(testIssuer))
	f.Add([]byte(`{"issuer":"` + testIssuer + `","jwks_uri":"` + testIssuer + `/../x"}`))
	f.Add([]byte(`{"issuer":"` + testIssuer + `","jwks_uri":"https://oidc.example.test/cluster-a/%2e%2e/k"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, rel, err := ParseDiscovery(b, testIssuer)
		if err != nil {
			return
		}
		if d.Issuer != testIssuer {
			t.Fatalf("accepted issuer %q", d.Issuer)
		}
		if err := checkRelPath(rel); err != nil {
			t.Fatalf("accepted JWKS path %q: %v", rel, err)
		}
		var back Discovery
		if err := json.Unmarshal(d.Render(), &back); err != nil || back.Issuer != testIssuer {
			t.Fatalf("rendered document does not round-trip: %v", err)
		}
	})
}
