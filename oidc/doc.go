// Package oidc verifies projected ServiceAccount tokens locally, the way an
// OIDC relying party would: it reads the issuer's discovery document and
// JWKS, then checks each token's signature and claims itself. The agent uses
// it to cross-check the token a pod presents against the pod it identified by
// source address.
//
// The rules, stricter than most JWT libraries on purpose:
//
//   - Only the compact JWS serialization with exactly three parts. The JSON
//     serialization, and with it any token carrying more than one signature,
//     is refused, as are JWE tokens and tokens over MaxTokenSize bytes, before
//     anything is decoded.
//   - base64url without padding and with canonical trailing bits; JSON objects
//     with duplicate member names are refused, and member names are matched
//     exactly (encoding/json alone would take the last duplicate and match
//     "ALG" to "alg").
//   - alg must be in Options.AllowedAlgs (RS256 and ES256 are the only ones
//     implemented; none and HS* can never be enabled), and must fit the key:
//     RS256 needs an RSA key, ES256 a P-256 key, and a JWK that names its own
//     alg must name the token's. There is no HMAC code path, so a token
//     "signed" with the issuer's public key as an HMAC secret cannot verify.
//   - crit and cty are refused; typ, when present, must be JWT. Key-bearing
//     headers (jwk, jku, x5c, x5u) are ignored: keys only ever come from the
//     issuer's JWKS.
//   - iss must equal Options.Issuer, aud (a string or an array) must contain
//     Options.Audience, exp is required and now < exp + Leeway, nbf (when
//     present) now >= nbf - Leeway; iat must be a number when present and is
//     otherwise ignored.
//
// Claims are checked before the signature. That can only refuse a token,
// never accept one (a token is accepted only when every check passes), and it
// means only a token that would otherwise be acceptable can make the
// verifier fetch the JWKS again.
//
// Key selection: a token that names a kid is checked against the key with
// that kid and no other. A token without a kid is accepted only while the
// issuer publishes exactly one usable key (Kubernetes always sets kid, so
// this only matters for other issuers); with more keys it is refused rather
// than tried against each. A kid that appears more than once in the JWKS is
// ambiguous and none of its keys is used.
//
// Unknown kids: keys are cached; a token whose kid is unknown makes the
// verifier fetch the JWKS again, at most once per Options.RefetchInterval,
// with concurrent callers sharing one fetch, and is refused with
// ErrUnknownKey if the kid is still unknown. This is how key rotation is
// picked up. A key removed from the JWKS keeps verifying tokens until the
// next fetch, and results already cached stay valid until their tokens
// expire.
//
// Verified results are cached by the SHA-256 of the token until the token's
// exp (never past it, and leeway does not extend it), so a token presented
// again costs one hash and one map lookup.
//
// Errors wrap one of the Err* sentinels (use errors.Is). ErrDiscovery is the
// only one that can pass by itself: the issuer could not be reached or
// answered nonsense. No error message or log line ever contains a token.
package oidc
