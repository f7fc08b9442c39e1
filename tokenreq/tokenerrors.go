package tokenreq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
)

// classifyTokenError turns an error from the TokenRequest API into a
// *failure.Error. Answers that describe the pod or ServiceAccount (it is gone,
// it was replaced, podcreds may not act for it, the request does not fit it)
// are final; everything about the API server's health or reachability is
// retriable, and so is anything unrecognised, because giving a pod up for
// good on an error we do not understand is worse than asking again.
//
// Messages name the namespace, ServiceAccount and pod, never a token (the
// request carries none, and the API server's messages echo none).
func classifyTokenError(err error, spec TokenSpec) error {
	sa := fmt.Sprintf("ServiceAccount %s/%s", spec.Namespace, spec.ServiceAccount)
	pod := fmt.Sprintf("pod %s/%s", spec.Namespace, spec.Pod.Name)
	// The API server may say when to come back (429, 5xx, timeouts).
	seconds, _ := apierrors.SuggestsClientDelay(err)
	retryAfter := secondsOr0(seconds)

	switch {
	case apierrors.IsNotFound(err):
		switch notFoundKind(err) {
		case "pods":
			return failure.Final(http.StatusNotFound, "PodNotFound",
				pod+" no longer exists, so no token can be bound to it", podGone(err))
		case "serviceaccounts":
			return failure.Final(http.StatusNotFound, "ServiceAccountNotFound", sa+" does not exist", err)
		default:
			return failure.Final(http.StatusNotFound, "ServiceAccountNotFound",
				sa+" or "+pod+" does not exist", err)
		}
	case apierrors.IsConflict(err):
		// The bound object's UID no longer matches: the pod was deleted and
		// a new one took its name. Ours is gone.
		return failure.Final(http.StatusNotFound, "PodNotFound",
			fmt.Sprintf("%s (UID %s) was replaced by another pod of the same name", pod, spec.Pod.UID), podGone(err))
	case apierrors.IsForbidden(err):
		// The agent's RBAC role lacks the grant, or an admission policy
		// refused this token: the operator's to fix, final for the pod.
		return failure.Final(http.StatusForbidden, "TokenRequestForbidden",
			"the Kubernetes API server forbids podcreds to create serviceaccounts/token for "+sa+" bound to "+pod+
				": grant create on serviceaccounts/token in the agent's ClusterRole, as deploy/rbac.yaml does, and check admission policies that limit token requests", err)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		// For example: the pod does not run as this ServiceAccount.
		return failure.Final(http.StatusForbidden, "TokenRequestRejected",
			"the API server rejected the token request for "+sa+" bound to "+pod+" (does the pod run as that ServiceAccount?); the agent's log has the API server's reason", err)
	case apierrors.IsTooManyRequests(err):
		return failure.Retriable("Throttled",
			"the API server is throttling token requests (for "+sa+")", retryAfter, err)
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		return failure.Retriable("UpstreamUnavailable", "the token request for "+sa+" timed out", retryAfter, err)
	case errors.Is(err, context.Canceled):
		return failure.Retriable("UpstreamUnavailable", "the token request for "+sa+" was cancelled", 0, err)
	case apierrors.IsUnauthorized(err):
		// podcreds' own credentials were refused; nothing the pod can fix,
		// and they may be rotated back into shape.
		return failure.Retriable("UpstreamUnavailable",
			"the API server refused podcreds' credentials while requesting a token for "+sa, 0, err)
	default:
		// 5xx, connection refused or reset, DNS failures, unknown answers.
		return failure.Retriable("UpstreamUnavailable", "the token request for "+sa+" failed", retryAfter, err)
	}
}

// podGone marks err as caused by the bound pod alone (cache.ErrPodGone): the
// cache then retries as another pod of the ServiceAccount instead of giving
// up on the ServiceAccount's credentials.
func podGone(err error) error { return fmt.Errorf("%w: %w", cache.ErrPodGone, err) }

// notFoundKind returns the resource a NotFound answer is about
// ("serviceaccounts" or "pods"), or "" when the answer does not say.
func notFoundKind(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if d := status.Status().Details; d != nil {
			return d.Kind
		}
	}
	return ""
}

// secondsOr0 turns a Retry-After delay in whole seconds into a duration,
// 0 (the default) when the server named none.
func secondsOr0(seconds int) (d time.Duration) {
	if seconds > 0 {
		d = time.Duration(seconds) * time.Second
	}
	return d
}
