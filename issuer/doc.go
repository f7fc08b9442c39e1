// Package issuer publishes a cluster's ServiceAccount token issuer where AWS
// IAM (or any OIDC relying party) can fetch it: the discovery document and
// the signing keys (JWKS), read from the API server's own endpoints and
// written to an S3 bucket or a directory.
//
// A Publisher does one sync at a time: read both documents from the API
// server, check them (the issuer must be the configured public URL, the JWKS
// must hold at least one well-formed public key), merge the keys with every
// key the API server served within the overlap window, and write whatever
// changed. The memory of past keys lives in the target beside the documents
// (StateObject), so a restarted publisher keeps old keys exactly as long as
// the one before it would have. Nothing is written when a check fails.
//
// Controller runs a Publisher under leader election on a Lease, on a poll
// interval and on demand. Package doctor checks the published result.
package issuer
