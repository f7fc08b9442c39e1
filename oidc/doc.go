// Package oidc verifies projected ServiceAccount tokens locally, the way an
// OIDC relying party would: it reads the issuer's discovery document and
// JWKS, then checks each token's signature and claims itself. The agent uses
// it to cross-check the token a pod presents against the pod it identified by
// source address.
//
// JWS parsing, JWK decoding and signature checks are go-jose's
// (github.com/go-jose/go-jose/v4, as the kube-apiserver and coreos/go-oidc
// use it), always under an explicit algorithm allow-list. go-jose's own JSON
// decoder reads headers, claims, JWKS entries and the discovery document:
// member names match exactly and a duplicate member anywhere is refused.
//
// On top of it, podcreds keeps the rules where it is stricter on purpose,
// each shown by TestStricterThanGoJOSE with a token go-jose alone accepts:
//
//   - Only the compact serialization, three parts, at most MaxTokenSize
//     bytes, each part canonical base64url (go-jose decodes leniently, so a
//     second spelling of a signed token would verify there).
//   - alg must be in Options.AllowedAlgs, a subset of RS256 and ES256 (none
//     and HS* can never be enabled), and must fit the key: RS256 needs an
//     RSA key, ES256 a P-256 key, and a JWK that names its own alg must name
//     the token's. No key is ever handed to go-jose as an HMAC secret.
//   - crit and cty are refused (go-jose accepts crit naming b64); typ, when
//     present, must be JWT. Key-bearing headers (jwk, jku, x5c, x5u) are
//     ignored: keys only ever come from the issuer's JWKS.
//   - JWKS entries: only RSA and EC P-256 signing keys (use sig, key_ops
//     allowing verify, no private members), RSA moduli of 2048–4096 bits
//     with an odd exponent; a bad entry is skipped, not the whole set.
//   - iss must equal Options.Issuer, aud (a string or an array) must contain
//     Options.Audience, exp is required and now < exp + Leeway, nbf (when
//     present) now >= nbf - Leeway; iat must be a number when present and is
//     otherwise ignored (nbf carries the same instant in Kubernetes tokens).
//
// Claims are checked before the signature. That can only refuse a token,
// never accept one (a token is accepted only when every check passes), and it
// means only a token that would otherwise be acceptable can make the
// verifier fetch the JWKS again.
//
// Key selection: a token that names a kid is checked against the key with
// that kid and no other. A kid that appears more than once in the JWKS is
// ambiguous and none of its keys is used (go-jose, handed a key set, uses the
// first). A token without a kid is accepted only while the issuer publishes
// exactly one usable key (Kubernetes always sets kid, so this only matters
// for other issuers); with more keys it is refused rather than tried against
// each.
//
// Discovery and key caching are this package's, not go-oidc's: go-oidc's
// RemoteKeySet fetches the JWKS again on every unknown kid or failed
// signature with no least interval between fetches, tries every key for a
// token without kid, and fails the whole set on one entry go-jose cannot
// decode. Here a token whose kid is unknown makes the verifier fetch the JWKS
// again, at most once per Options.RefetchInterval, with concurrent callers
// sharing one fetch, and is refused with ErrUnknownKey if the kid is still
// unknown. This is how key rotation is picked up. A key removed from the JWKS
// keeps verifying tokens until the next fetch, and results already cached
// stay valid until their tokens expire.
//
// Verified results are cached by the SHA-256 of the token until the token's
// exp (never past it, and leeway does not extend it), so a token presented
// again costs one hash and one map lookup.
//
// Errors wrap one of the Err* sentinels (use errors.Is). ErrDiscovery is the
// only one that can pass by itself: the issuer could not be reached or
// answered nonsense. No error message or log line ever contains a token.
package oidc
