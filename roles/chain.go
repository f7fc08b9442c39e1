package roles

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/tokenreq"
)

// Annotations for the optional second hop and the session's name.
const (
	// TargetRoleAnnotation on a ServiceAccount (or on a pod, overriding its
	// ServiceAccount's) names a role to chain into with AssumeRole from
	// the first role's credentials, so the session carries tags. The
	// namespace's AllowedRolesAnnotation must allow it, as for a
	// pod-chosen role: there is no fallback.
	TargetRoleAnnotation = "podcreds.io/target-role-arn"
	// SessionNameAnnotation on a ServiceAccount sets the role session name
	// (2–64 characters of [A-Za-z0-9_+=,.@-]), the same on every node and
	// refresh; default podcreds@<namespace>.<serviceAccount>.
	SessionNameAnnotation = "podcreds.io/session-name"
	// ExternalIDAnnotation on a ServiceAccount is the ExternalId passed to
	// the second hop's AssumeRole (2–1224 characters of
	// [A-Za-z0-9_+=,.@:/-]).
	ExternalIDAnnotation = "podcreds.io/external-id"
)

// chainAnnotations reads a ServiceAccount's second-hop and session-name
// annotations into key. A malformed one is a final refusal naming it: a
// mistyped annotation must not quietly serve the first role instead.
func chainAnnotations(key *cache.Key, ann map[string]string) error {
	who := "serviceaccount " + key.Namespace + "/" + key.ServiceAccount
	if v := strings.TrimSpace(ann[TargetRoleAnnotation]); v != "" {
		if !validARN(v) {
			return failure.Final(http.StatusBadRequest, "InvalidTargetRole",
				fmt.Sprintf("%s: annotation %s is not a role ARN: %q; write arn:aws:iam::<account>:role/<name>", who, TargetRoleAnnotation, v), nil)
		}
		key.TargetRoleARN = v
	}
	if v, ok := ann[SessionNameAnnotation]; ok {
		if err := tokenreq.CheckSessionName(v); err != nil {
			return failure.Final(http.StatusBadRequest, "InvalidSessionName",
				fmt.Sprintf("%s: annotation %s: %v", who, SessionNameAnnotation, err), nil)
		}
		key.SessionName = v
	}
	if v, ok := ann[ExternalIDAnnotation]; ok {
		if err := checkExternalID(v); err != nil {
			return failure.Final(http.StatusBadRequest, "InvalidExternalID",
				fmt.Sprintf("%s: annotation %s: %v", who, ExternalIDAnnotation, err), nil)
		}
		key.ExternalID = v
	}
	return nil
}

// checkExternalID applies STS's rule for ExternalId.
func checkExternalID(s string) error {
	if len(s) < 2 || len(s) > 1224 {
		return fmt.Errorf("an external id must be 2 to 1224 characters long, got %d", len(s))
	}
	for _, r := range s {
		ok := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("_+=,.@:/-", r)
		if !ok {
			return fmt.Errorf("an external id may hold only letters, digits and _+=,.@:/-, got %q", r)
		}
	}
	return nil
}

// resolveTarget applies the namespace's policy to the second hop: the pod's
// own target role if it names one, else its ServiceAccount's, must match a
// pattern of the namespace's AllowedRolesAnnotation and be in an allowed
// account, exactly as a pod-chosen role must.
func (r *RoleResolver) resolveTarget(ctx context.Context, pod Pod, d *Decision) error {
	key := &d.Key
	if key.TargetRoleARN != "" {
		d.TargetFrom = FromServiceAccount
	}
	if pod.TargetRoleARN != "" {
		d.TargetFrom = FromPod
		if !validARN(pod.TargetRoleARN) {
			return failure.Final(http.StatusBadRequest, "InvalidTargetRole",
				fmt.Sprintf("pod %s: annotation %s is not a role ARN: %q", pod, TargetRoleAnnotation, pod.TargetRoleARN), nil)
		}
		key.TargetRoleARN = pod.TargetRoleARN
	}
	if key.TargetRoleARN == "" {
		return nil
	}
	patterns, err := r.allowedRoles(ctx, pod.Namespace, d)
	if err != nil {
		return err
	}
	if d.TargetPattern = firstMatch(patterns, key.TargetRoleARN); d.TargetPattern == "" {
		return failure.Final(http.StatusForbidden, "TargetRoleNotAllowed",
			fmt.Sprintf("pod %s would chain into target role %s, which namespace %s does not allow; add a matching pattern to its annotation %s, or remove %s",
				pod, key.TargetRoleARN, pod.Namespace, AllowedRolesAnnotation, TargetRoleAnnotation), nil)
	}
	return r.checkAccount(key.TargetRoleARN)
}
