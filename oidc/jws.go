package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"slices"
	"strings"
)

// Signature algorithms this package implements, for Options.AllowedAlgs.
// There are deliberately no others: none and the HMAC algorithms have no
// place in tokens verified with an issuer's public keys.
const (
	// RS256 is RSASSA-PKCS1-v1_5 with SHA-256, what Kubernetes signs with
	// by default.
	RS256 = "RS256"
	// ES256 is ECDSA on P-256 with SHA-256, the signature being r||s in 64
	// bytes.
	ES256 = "ES256"
)

// MaxTokenSize bounds the tokens Verify looks at. Kubernetes tokens are
// about 1 KiB; anything past this is refused before it is hashed or parsed.
const MaxTokenSize = 16 << 10

// keyType is the kind of public key an algorithm needs.
type keyType int

const (
	keyRSA keyType = iota + 1
	keyEC
)

func (t keyType) String() string {
	switch t {
	case keyRSA:
		return "RSA"
	case keyEC:
		return "EC P-256"
	}
	return "unknown"
}

// algKeyType maps each implemented algorithm to the key type it needs.
var algKeyType = map[string]keyType{RS256: keyRSA, ES256: keyEC}

// jws is a compact JWS split and decoded, not yet verified.
type jws struct {
	alg    string
	kid    string
	hasKid bool
	claims object
	signed string // header.payload: the signing input
	sig    []byte
}

// parseJWS splits and decodes a compact JWS and checks its header, alg
// against allowed included. It trusts nothing and decides nothing about keys
// or claims.
func parseJWS(token string, allowed []string) (*jws, error) {
	switch {
	case token == "":
		return nil, errorf(ErrMalformed, "empty token")
	case len(token) > MaxTokenSize:
		return nil, errorf(ErrMalformed, "token is %d bytes, more than %d", len(token), MaxTokenSize)
	case token[0] == '{':
		return nil, errorf(ErrMalformed, "JWS JSON serialization is not accepted")
	}
	if n := strings.Count(token, ".") + 1; n != 3 {
		return nil, errorf(ErrMalformed, "token has %d parts, want 3 (one compact JWS with one signature)", n)
	}
	last := strings.LastIndexByte(token, '.')
	h, p, _ := strings.Cut(token[:last], ".")
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, errorf(ErrMalformed, "header is not base64url")
	}
	header, err := decodeObject(hb)
	if err != nil {
		return nil, errorf(ErrMalformed, "header: %v", err)
	}
	t := &jws{signed: token[:last]}
	if err := t.readHeader(header); err != nil {
		return nil, err
	}
	if !slices.Contains(allowed, t.alg) {
		return nil, errorf(ErrAlgorithm, "alg %s is not allowed", quote(t.alg))
	}
	pb, err := b64.DecodeString(p)
	if err != nil {
		return nil, errorf(ErrMalformed, "payload is not base64url")
	}
	if t.claims, err = decodeObject(pb); err != nil {
		return nil, errorf(ErrMalformed, "claims: %v", err)
	}
	if t.sig, err = b64.DecodeString(token[last+1:]); err != nil || len(t.sig) == 0 {
		return nil, errorf(ErrMalformed, "signature is missing or not base64url")
	}
	return t, nil
}

func (t *jws) readHeader(h object) error {
	var present bool
	var err error
	if t.alg, present, err = h.str("alg"); err != nil || !present {
		return errorf(ErrMalformed, "header has no alg string")
	}
	if t.kid, t.hasKid, err = h.str("kid"); err != nil {
		return errorf(ErrMalformed, "header kid is not a string")
	}
	if typ, present, err := h.str("typ"); err != nil || present && !strings.EqualFold(typ, "JWT") {
		return errorf(ErrMalformed, "header typ is not JWT")
	}
	if h.has("crit") {
		return errorf(ErrMalformed, "header crit is not supported")
	}
	if h.has("cty") {
		return errorf(ErrMalformed, "header cty is not supported (no nested tokens)")
	}
	return nil
}

// verifySignature checks sig over signed with key k under alg. Key selection
// has already matched alg to k's type; the checks here repeat it so that
// this function alone can never verify with the wrong kind of key.
func verifySignature(k *jwk, alg, signed string, sig []byte) error {
	sum := sha256.Sum256([]byte(signed))
	switch {
	case alg == RS256 && k.rsa != nil:
		if rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, sum[:], sig) != nil {
			return errorf(ErrSignature, "RS256 signature does not verify with key %s", quote(k.kid))
		}
		return nil
	case alg == ES256 && k.ec != nil:
		if len(sig) != 64 {
			return errorf(ErrSignature, "ES256 signature is %d bytes, want 64", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(k.ec, sum[:], r, s) {
			return errorf(ErrSignature, "ES256 signature does not verify with key %s", quote(k.kid))
		}
		return nil
	}
	return errorf(ErrAlgorithm, "alg %s does not fit key %s", quote(alg), quote(k.kid))
}
