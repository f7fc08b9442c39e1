package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/oidc"
)

// TokenMode says how the container endpoint treats a projected
// ServiceAccount token presented in the Authorization header.
type TokenMode string

// Token verification modes.
const (
	// TokenOff ignores presented tokens: source IP alone identifies.
	TokenOff TokenMode = "off"
	// TokenIfPresent verifies a presented token and requires it to name the
	// pod found by source IP; requests without a token are served by IP.
	TokenIfPresent TokenMode = "if-present"
	// TokenRequired refuses requests without a valid token of the pod.
	TokenRequired TokenMode = "required"
)

// Verifier checks a projected ServiceAccount token (package oidc).
type Verifier interface {
	Verify(ctx context.Context, token string) (*oidc.Claims, error)
}

var (
	errTokenMissing  = failure.Final(http.StatusUnauthorized, "TokenRequired", "this agent requires the pod's ServiceAccount token in the Authorization header (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)", nil)
	errTokenOtherPod = failure.Final(http.StatusForbidden, "TokenPodMismatch", "the presented token belongs to another pod than the one at this address", nil)
	errHostNetwork   = failure.Final(http.StatusForbidden, "HostNetworkPodNotServed", "the token names a hostNetwork pod that is not running on this node", nil)
	errHostNetworkIP = failure.Final(http.StatusForbidden, "HostNetworkTokenFromPodAddress",
		"the token names a hostNetwork pod, which is served only from the node's own addresses; present it from the node's network namespace", nil)
)

// presentedToken returns the token a client sent: SDKs put the token file's
// content in Authorization verbatim; "Bearer <token>" is accepted too.
func presentedToken(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		v = v[7:]
	}
	return strings.TrimSpace(v)
}

// identifyWithToken identifies a caller that presented a token: the token
// must verify, and name either the pod found at the source address or a
// running hostNetwork pod on this node. hostNetwork pods share the node's
// addresses, so for them the token is the main evidence of who is calling;
// it is still taken only from an address of the node itself (nodeAddress),
// so a hostNetwork pod's token that leaked into an ordinary pod is worth
// nothing there. local is the address the request arrived on.
func (a *Agent) identifyWithToken(ctx context.Context, ip, local netip.Addr, token string) (*Pod, error) {
	claims, err := a.opts.Verifier.Verify(ctx, token)
	if err != nil {
		if errors.Is(err, oidc.ErrDiscovery) {
			a.tokenResult(metrics.TokenUnavailable)
			return nil, keysUnavailable(err)
		}
		a.tokenResult(metrics.TokenInvalid)
		return nil, invalidToken(err)
	}
	if p := a.index.Pod(claims.Pod.UID); p != nil && p.HostNetwork {
		if p.Deleting || p.Phase != kube.PodRunning {
			a.tokenResult(metrics.TokenOtherPod)
			return nil, errHostNetwork
		}
		if !a.nodeAddress(ip, local, p) {
			a.tokenResult(metrics.TokenOtherPod)
			return nil, errHostNetworkIP
		}
		a.tokenResult(metrics.TokenValid)
		return p, nil
	}
	p, err := a.index.Lookup(ctx, ip)
	if err != nil {
		return nil, err
	}
	if p.UID != claims.Pod.UID || claims.Pod.UID == "" {
		a.tokenResult(metrics.TokenOtherPod)
		return nil, failure.Final(http.StatusForbidden, errTokenOtherPod.Code,
			fmt.Sprintf("the presented token belongs to pod %s/%s, not to %s at this address", claims.Namespace, claims.Pod.Name, p), nil)
	}
	a.tokenResult(metrics.TokenValid)
	return p, nil
}

// nodeAddress reports whether a request from ip, arriving on local, comes
// from the node's own network namespace, where hostNetwork pod p runs: ip is
// not an address the index holds for any pod, and it is loopback, one of p's
// addresses (a hostNetwork pod's status.podIPs are the node's host IPs), or
// the address the request arrived on (a node process dialling a link-local
// listener gets that address as its source).
func (a *Agent) nodeAddress(ip, local netip.Addr, p *Pod) bool {
	if a.index.Holds(ip) {
		return false
	}
	if ip.IsLoopback() || (local.IsValid() && ip == local) {
		return true
	}
	for _, own := range p.IPs {
		if ip == own {
			return true
		}
	}
	return false
}

// localIP is the address a request arrived on, if net/http recorded it.
func localIP(r *http.Request) netip.Addr {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ip, ok := remoteIP(la.String()); ok {
			return ip
		}
	}
	return netip.Addr{}
}

// tokenChecks names, for each way a presented token can fail, the check and
// what usually fixes it. The oidc package's messages name claims and
// expected values, never the token, so they are safe to pass on.
var tokenChecks = []struct {
	err        error
	check, fix string
}{
	{oidc.ErrAudience, "audience", "project the token with the audience this agent expects (--pod-token-audience, default podcreds), not sts.amazonaws.com"},
	{oidc.ErrIssuer, "issuer", "the token must come from this cluster's ServiceAccount issuer (--pod-token-issuer)"},
	{oidc.ErrExpired, "expiry", "the token file is stale: the kubelet rotates projected tokens, so read the file on every request as SDKs do"},
	{oidc.ErrNotYetValid, "not-before", "the node's clock is behind the API server's; check time synchronisation"},
	{oidc.ErrUnknownKey, "signature", "no signing key of the issuer matches the token's kid: a token of another cluster, or keys rotated away"},
	{oidc.ErrSignature, "signature", "the token was not signed by this cluster's issuer"},
	{oidc.ErrAlgorithm, "signature", "only RS256 and ES256 tokens of this cluster's issuer are accepted"},
	{oidc.ErrMalformed, "format", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE must hold a projected ServiceAccount token (a JWT) and nothing else"},
}

// invalidTokenReason says which check a presented token failed and what to
// do about it.
func invalidTokenReason(err error) string {
	for _, c := range tokenChecks {
		if errors.Is(err, c.err) {
			return fmt.Sprintf("the presented ServiceAccount token failed the %s check (%v): %s", c.check, err, c.fix)
		}
	}
	return fmt.Sprintf("the presented ServiceAccount token is not valid (%v)", err)
}

// keysUnavailable answers when the issuer's keys cannot be fetched: the
// token may be fine, so the client should come back.
func keysUnavailable(err error) error {
	return failure.Retriable("TokenVerificationUnavailable", "cannot fetch the cluster's token signing keys (the issuer's OIDC discovery or JWKS) to verify the presented token; retrying", 0, err)
}

// invalidToken answers a presented token that failed verification.
func invalidToken(err error) error {
	return failure.Final(http.StatusUnauthorized, "InvalidToken", invalidTokenReason(err), err)
}

// tokenResult counts one check of a presented token.
func (a *Agent) tokenResult(result string) {
	a.metrics.TokenVerifications.WithLabelValues(result).Inc()
}
