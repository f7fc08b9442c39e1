package oidc

import (
	"encoding/base64"
	"errors"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Signature algorithms this package accepts, for Options.AllowedAlgs.
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

// algKeyType maps each accepted algorithm to the key type it needs.
var algKeyType = map[string]keyType{RS256: keyRSA, ES256: keyEC}

// b64 is base64url without padding and (Strict) without stray bits in the
// last character, so that one token has exactly one spelling. go-jose
// decodes leniently and signs its own re-encoding, so a token whose last
// character carries stray bits would verify there: parseJWS checks the
// spelling first.
var b64 = base64.RawURLEncoding.Strict()

// jws is a compact JWS parsed by go-jose, not yet verified.
type jws struct {
	alg    string
	kid    string
	hasKid bool
	sig    *jose.JSONWebSignature
}

// parseJWS refuses what podcreds refuses before go-jose sees the token (size,
// anything but three canonical base64url parts), lets go-jose parse it under
// the allow-list, then applies the header rules go-jose does not have. It
// trusts nothing and decides nothing about keys or claims.
func parseJWS(token string, allowed []jose.SignatureAlgorithm) (*jws, error) {
	switch {
	case token == "":
		return nil, errorf(ErrMalformed, "empty token")
	case len(token) > MaxTokenSize:
		return nil, errorf(ErrMalformed, "token is %d bytes, more than %d", len(token), MaxTokenSize)
	case token[0] == '{':
		return nil, errorf(ErrMalformed, "JWS JSON serialization is not accepted")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errorf(ErrMalformed, "token has %d parts, want 3 (one compact JWS with one signature)", len(parts))
	}
	for i, name := range []string{"header", "payload", "signature"} {
		if _, err := b64.DecodeString(parts[i]); err != nil {
			return nil, errorf(ErrMalformed, "%s is not canonical base64url", name)
		}
	}
	sig, err := jose.ParseSignedCompact(token, allowed)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, errorf(ErrAlgorithm, "alg %s is not allowed", quote(string(alg.Got)))
		}
		return nil, errorf(ErrMalformed, "not a compact JWS: %s", quote(err.Error()))
	}
	if parts[2] == "" {
		return nil, errorf(ErrMalformed, "signature is missing")
	}
	h := sig.Signatures[0].Header // compact: exactly one signature
	if err := checkHeader(h); err != nil {
		return nil, err
	}
	return &jws{alg: h.Algorithm, kid: h.KeyID, hasKid: h.KeyID != "", sig: sig}, nil
}

// checkHeader applies the header rules go-jose leaves to its callers: it
// accepts crit naming b64, any typ and any cty.
func checkHeader(h jose.Header) error {
	if typ, present := h.ExtraHeaders[jose.HeaderType]; present {
		if s, ok := typ.(string); !ok || !strings.EqualFold(s, "JWT") {
			return errorf(ErrMalformed, "header typ is not JWT")
		}
	}
	if _, present := h.ExtraHeaders["crit"]; present {
		return errorf(ErrMalformed, "header crit is not supported")
	}
	if _, present := h.ExtraHeaders[jose.HeaderContentType]; present {
		return errorf(ErrMalformed, "header cty is not supported (no nested tokens)")
	}
	return nil
}

// verifySignature checks t's signature with key k. Key selection has
// already matched t's alg to k's type; go-jose checks it again, so that
// this function alone can never verify with the wrong kind of key. go-jose
// answers one error for every failed check, so the message cannot say more.
func verifySignature(k *jwk, t *jws) error {
	var err error
	if k.rsa != nil {
		_, err = t.sig.Verify(k.rsa)
	} else {
		_, err = t.sig.Verify(k.ec)
	}
	if err != nil {
		return errorf(ErrSignature, "%s signature does not verify with key %s", t.alg, quote(k.kid))
	}
	return nil
}
