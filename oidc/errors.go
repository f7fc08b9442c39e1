package oidc

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error Verify returns wraps at least one of them
// (an unknown kid while the issuer is unreachable wraps ErrUnknownKey and
// ErrDiscovery; a caller giving up wraps ErrDiscovery and its context's
// error), with a message that may be logged: it never contains the token.
var (
	// ErrMalformed: the token is not a well-formed compact JWS with JSON
	// header and claims (bad size, part count, base64, JSON, or a claim of
	// the wrong type), or uses a header this package refuses (crit, cty, a
	// typ other than JWT).
	ErrMalformed = errors.New("malformed token")
	// ErrAlgorithm: the header's alg is not allowed, or does not fit the key
	// the kid names.
	ErrAlgorithm = errors.New("token algorithm not accepted")
	// ErrSignature: the signature does not verify with the issuer's key.
	ErrSignature = errors.New("token signature invalid")
	// ErrIssuer: iss is missing or is not the configured issuer.
	ErrIssuer = errors.New("token issuer not accepted")
	// ErrAudience: aud is missing or does not contain the configured
	// audience.
	ErrAudience = errors.New("token audience not accepted")
	// ErrExpired: exp is missing or lies more than the leeway in the past.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf lies more than the leeway in the future.
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrUnknownKey: no single issuer key matches the token's kid, even
	// after fetching the JWKS again (or the token has no kid and the issuer
	// publishes several keys).
	ErrUnknownKey = errors.New("token signing key unknown")
	// ErrDiscovery: the issuer's discovery document or JWKS could not be
	// fetched or is unusable. Unlike the others, this says nothing about the
	// token: asking again later can succeed.
	ErrDiscovery = errors.New("issuer discovery failed")
)

// errorf wraps sentinel with a detail message. Callers must never pass the
// token or any part of it.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// quote renders an untrusted short string (a kid, an alg, an issuer) for an
// error message: quoted, so it cannot forge log lines, and cut short, so it
// cannot flood them.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
