package agent

import (
	"context"
	"errors"
	"fmt"
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
// addresses, so for them the token is the only evidence of who is calling.
func (a *Agent) identifyWithToken(ctx context.Context, ip netip.Addr, token string) (*Pod, error) {
	claims, err := a.opts.Verifier.Verify(ctx, token)
	if err != nil {
		if errors.Is(err, oidc.ErrDiscovery) {
			a.tokenResult(metrics.TokenUnavailable)
			return nil, failure.Retriable("TokenVerificationUnavailable", "cannot fetch the cluster's token signing keys", 0, err)
		}
		a.tokenResult(metrics.TokenInvalid)
		return nil, failure.Final(http.StatusUnauthorized, "InvalidToken", "the presented ServiceAccount token is not valid", err)
	}
	if p := a.index.Pod(claims.Pod.UID); p != nil && p.HostNetwork {
		if p.Deleting || p.Phase != kube.PodRunning {
			a.tokenResult(metrics.TokenOtherPod)
			return nil, errHostNetwork
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

// tokenResult counts one check of a presented token.
func (a *Agent) tokenResult(result string) {
	a.metrics.TokenVerifications.WithLabelValues(result).Inc()
}
