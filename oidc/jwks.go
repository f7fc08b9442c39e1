package oidc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// Bounds on what a JWKS may hold. RSA keys under 2048 bits are refused as
// too weak, over 8192 bits as a way to make every verification slow.
const (
	minRSABits  = 2048
	maxRSABits  = 8192
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
// the whole set; every entry sharing a kid with another is skipped as
// ambiguous. A set with no usable key is an error.
func parseJWKS(b []byte) (*keySet, error) {
	doc, err := decodeObject(b)
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	raw := doc["keys"]
	var entries []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &entries) != nil {
		return nil, errors.New("JWKS has no keys array")
	}
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

// parseJWK parses one JWKS entry; an error says why it is not usable.
func parseJWK(raw json.RawMessage) (*jwk, error) {
	o, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	k := &jwk{}
	kty, _, err := o.str("kty")
	if err != nil {
		return nil, err
	}
	if k.kid, k.hasKid, err = o.str("kid"); err != nil {
		return nil, err
	}
	if use, present, err := o.str("use"); err != nil || present && use != "sig" {
		return nil, errors.New("use is not sig")
	}
	if ops, ok := o["key_ops"]; ok {
		var list []string
		if json.Unmarshal(ops, &list) != nil || !slices.Contains(list, "verify") {
			return nil, errors.New("key_ops does not allow verify")
		}
	}
	if o.has("d") || o.has("p") || o.has("q") {
		return nil, errors.New("entry holds private key material")
	}
	if k.alg, _, err = o.str("alg"); err != nil {
		return nil, err
	}
	switch kty {
	case "RSA":
		k.rsa, err = rsaKey(o)
	case "EC":
		k.ec, err = ecKey(o)
	default:
		return nil, fmt.Errorf("kty %s is not supported", quote(kty))
	}
	if err != nil {
		return nil, err
	}
	if want, ok := algKeyType[k.alg]; k.alg != "" && (!ok || want != k.keyType()) {
		return nil, fmt.Errorf("alg %s is not supported for a %s key", quote(k.alg), k.keyType())
	}
	return k, nil
}

// member decodes a base64url member of a JWK.
func member(o object, name string) ([]byte, error) {
	s, present, err := o.str(name)
	if err != nil || !present {
		return nil, fmt.Errorf("%s is missing or not a string", name)
	}
	b, err := b64.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%s is not base64url", name)
	}
	return b, nil
}

func rsaKey(o object) (*rsa.PublicKey, error) {
	n, err := member(o, "n")
	if err != nil {
		return nil, err
	}
	e, err := member(o, "e")
	if err != nil {
		return nil, err
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n)}
	if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA modulus of %d bits is outside %d–%d", bits, minRSABits, maxRSABits)
	}
	ev := new(big.Int).SetBytes(e)
	if !ev.IsInt64() || ev.Int64() < 3 || ev.Int64() > 1<<31-1 || ev.Bit(0) == 0 {
		return nil, errors.New("RSA exponent is not an odd number from 3 to 2^31-1")
	}
	pub.E = int(ev.Int64())
	return pub, nil
}

func ecKey(o object) (*ecdsa.PublicKey, error) {
	if crv, _, err := o.str("crv"); err != nil || crv != "P-256" {
		return nil, errors.New("crv is not P-256")
	}
	x, err := member(o, "x")
	if err != nil {
		return nil, err
	}
	y, err := member(o, "y")
	if err != nil {
		return nil, err
	}
	if len(x) != 32 || len(y) != 32 {
		return nil, errors.New("P-256 coordinates are not 32 bytes each")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, x, y))
	if err != nil {
		return nil, errors.New("point is not on P-256")
	}
	return pub, nil
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
