package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
)

// Bounds on what a JWKS may hold. RSA keys under 2048 bits are refused as
// too weak; go-jose refuses moduli over 4096 bits (jose.MaxRSAModulusBits,
// a process-wide setting left at its default) as a way to make every
// verification slow.
const (
	minRSABits  = 2048
	maxRSABits  = 4096
	maxJWKSKeys = 100
)

// jwk is one usable public key from the issuer's JWKS. Exactly one of rsa
// and ec is set. Immutable once parsed.
type jwk struct {
	kid    string
	hasKid bool
	alg    string // the JWK's own alg member; empty when absent
	rsa    *rsa.PublicKey
	ec     *ecdsa.PublicKey
}

func (k *jwk) keyType() keyType {
	if k.rsa != nil {
		return keyRSA
	}
	return keyEC
}

// keySet is a parsed JWKS: the usable keys, by kid and all together.
// Immutable once parsed; a refetch replaces it whole.
type keySet struct {
	byKid map[string]*jwk
	all   []*jwk
	// skipped says why each unusable entry was left out, for the log.
	skipped []string
}

// parseJWKS parses a JWKS document. Entries of other types or uses, and
// malformed ones, are skipped (with a reason in skipped) rather than failing
// the whole set, as RFC 7517 asks; every entry sharing a kid with another is
// skipped as ambiguous. A set with no usable key is an error.
func parseJWKS(b []byte) (*keySet, error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %s", quote(err.Error()))
	}
	if doc.Keys == nil {
		return nil, errors.New("JWKS has no keys array")
	}
	entries := *doc.Keys
	if len(entries) > maxJWKSKeys {
		return nil, fmt.Errorf("JWKS has %d keys, more than %d", len(entries), maxJWKSKeys)
	}
	set := &keySet{byKid: map[string]*jwk{}}
	seen := map[string]int{}
	for i, e := range entries {
		k, err := parseJWK(e)
		if err != nil {
			set.skipped = append(set.skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		set.all = append(set.all, k)
		if k.hasKid {
			seen[k.kid]++
			set.byKid[k.kid] = k
		}
	}
	for kid, n := range seen {
		if n > 1 {
			set.skipped = append(set.skipped, fmt.Sprintf("%d keys share kid %s", n, quote(kid)))
			delete(set.byKid, kid)
		}
	}
	set.all = slices.DeleteFunc(set.all, func(k *jwk) bool { return k.hasKid && seen[k.kid] > 1 })
	if len(set.all) == 0 {
		return nil, fmt.Errorf("JWKS has no usable key (%d entries)", len(entries))
	}
	return set, nil
}

// jwkPolicy is what parseJWK reads before go-jose sees an entry: go-jose
// parses private keys too (it warns that its JWK decoder is not for
// untrusted input for that reason), and has no use for use or key_ops.
type jwkPolicy struct {
	Kty    string    `json:"kty"`
	Use    *string   `json:"use"`
	KeyOps *[]string `json:"key_ops"`
}

// parseJWK parses one JWKS entry; an error says why it is not usable.
// go-jose decodes the key material and checks an EC point is on its curve;
// the rest is podcreds' policy: signing keys for RS256 or ES256 only, RSA
// moduli of 2048–4096 bits with an odd exponent that fits 32 bits.
func parseJWK(raw json.RawMessage) (*jwk, error) {
	var pol jwkPolicy
	if err := json.Unmarshal(raw, &pol); err != nil {
		return nil, fmt.Errorf("not a JWK: %s", quote(err.Error()))
	}
	var private map[string]json.RawMessage
	_ = json.Unmarshal(raw, &private) // it parsed as an object just above
	for _, name := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "priv"} {
		if _, ok := private[name]; ok {
			return nil, errors.New("entry holds private key material")
		}
	}
	switch {
	case pol.Kty != "RSA" && pol.Kty != "EC":
		return nil, fmt.Errorf("kty %s is not supported", quote(pol.Kty))
	case pol.Use != nil && *pol.Use != "sig":
		return nil, errors.New("use is not sig")
	case pol.KeyOps != nil && !slices.Contains(*pol.KeyOps, "verify"):
		return nil, errors.New("key_ops does not allow verify")
	}
	var jk jose.JSONWebKey
	if err := jk.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("%s key: %s", pol.Kty, quote(err.Error()))
	}
	k := &jwk{kid: jk.KeyID, hasKid: jk.KeyID != "", alg: jk.Algorithm}
	switch pub := jk.Key.(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("RSA modulus of %d bits is outside %d–%d", bits, minRSABits, maxRSABits)
		}
		if pub.E < 3 || pub.E > 1<<31-1 || pub.E%2 == 0 {
			return nil, errors.New("RSA exponent is not an odd number from 3 to 2^31-1")
		}
		k.rsa = pub
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, errors.New("crv is not P-256")
		}
		k.ec = pub
	default:
		return nil, fmt.Errorf("%s key of type %T is not usable", pol.Kty, jk.Key)
	}
	if want, ok := algKeyType[k.alg]; k.alg != "" && (!ok || want != k.keyType()) {
		return nil, fmt.Errorf("alg %s is not supported for a %s key", quote(k.alg), k.keyType())
	}
	return k, nil
}

// find picks the key for a token. found is false only when the token names
// a kid the set does not hold, the one case a refetch can fix.
func (s *keySet) find(t *jws) (k *jwk, found bool, err error) {
	if t.hasKid {
		if k = s.byKid[t.kid]; k == nil {
			return nil, false, errorf(ErrUnknownKey, "no issuer key has kid %s", quote(t.kid))
		}
	} else {
		if len(s.all) != 1 {
			return nil, true, errorf(ErrUnknownKey, "token has no kid and the issuer publishes %d keys", len(s.all))
		}
		k = s.all[0]
	}
	if want := algKeyType[t.alg]; want != k.keyType() {
		return nil, true, errorf(ErrAlgorithm, "alg %s needs a %s key, key %s is %s", quote(t.alg), want, quote(k.kid), k.keyType())
	}
	if k.alg != "" && k.alg != t.alg {
		return nil, true, errorf(ErrAlgorithm, "key %s is for alg %s, token says %s", quote(k.kid), quote(k.alg), quote(t.alg))
	}
	return k, true, nil
}
