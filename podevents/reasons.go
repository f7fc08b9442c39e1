// Package podevents tells application teams, through Kubernetes Events on
// their pod, why the node agent refuses it credentials or cannot get them:
// `kubectl describe pod` then answers "why does my pod get 403?" without
// the agent's logs. A Notifier lets at most one Event per pod and reason
// through per interval, however many requests fail, and at most a node-wide
// budget of them in all, so a pod retrying in a loop costs the API server
// nothing and the agent no goroutine per request. What passes is recorded
// through client-go's tools/events (events.k8s.io/v1), which keeps a repeat
// of an Event as a series of the first, over the typed events/v1 client; a
// sink between them counts its writes (podcreds_events_total).
package podevents

// CredentialsUnavailable is the reason of the Event a pod gets when every
// request it made for longer than the threshold failed with a retriable
// error (STS down or throttling, the node's STS budget spent).
const CredentialsUnavailable = "CredentialsUnavailable"

// reasons maps the failure codes that reach a pod as Events to what the
// owner should do about them. The reason is the code itself, so an Event
// and the refusal the pod's SDK logged name the same thing; codes not listed
// (an unknown address, rate limiting, a bad request) are no Event's business.
// Messages say what to fix where the refusal itself does not.
var reasons = map[string]string{
	// The role decision (roles).
	"NoRole":                 "Annotate the ServiceAccount with eks.amazonaws.com/role-arn, or run the pod as a ServiceAccount that has one.",
	"NoServiceAccount":       "Static pods cannot get credentials: run it as a Deployment or DaemonSet with a ServiceAccount.",
	"ServiceAccountNotFound": "Create the ServiceAccount, or fix the pod's spec.serviceAccountName.",
	"InvalidRole":            "Fix the ServiceAccount's eks.amazonaws.com/role-arn: arn:aws:iam::<account>:role/<name>.",
	"InvalidTokenExpiration": "Fix or remove the ServiceAccount's eks.amazonaws.com/token-expiration.",
	"RoleNotAllowed":         "Add a matching pattern to the namespace's podcreds.io/allowed-roles, or remove the pod's podcreds.io/role-arn.",
	"AccountNotAllowed":      "Use a role in an account the agent's --allowed-accounts lists, or ask the platform team to add this account.",
	// The second hop's policy and annotations (roles), and STS refusing it.
	"TargetRoleNotAllowed": "",
	"InvalidTargetRole":    "Fix or remove the annotation.",
	"InvalidSessionName":   "Fix or remove the annotation.",
	"InvalidExternalID":    "Fix or remove the annotation.",
	"TargetRoleDenied":     "The target role's trust policy must let the first role call sts:AssumeRole and sts:TagSession (docs/session-tags.md).",
	// STS refusing the first hop, with STS's own code in the message.
	"AccessDenied":         "The role's trust policy must trust the cluster's OIDC provider for system:serviceaccount:<namespace>:<serviceAccount> and the token's audience.",
	"InvalidIdentityToken": "STS cannot verify the cluster's ServiceAccount tokens: check the IAM OIDC provider registered for the cluster's issuer.",
	"ExpiredToken":         "STS saw an expired ServiceAccount token: check the node's clock.",
	"RegionDisabled":       "Activate STS in this region for the account, or set the agent's --sts-region.",
	"InvalidRequest":       "Check the role ARN, and the agent's --credential-duration against the role's MaxSessionDuration.",
	// The Kubernetes API refusing the agent a token for the pod.
	"TokenRequestForbidden": "The agent's RBAC must allow serviceaccounts/token create.",
	"TokenRequestRejected":  "The pod must run as the ServiceAccount the token is asked for; recreate the pod if it was replaced.",
}

// notCounted lists retriable codes that say nothing about the pod's
// credentials: the request itself went away, or the agent is stopping.
var notCounted = map[string]bool{"RequestCancelled": true, "ShuttingDown": true}

// Reason returns the Event reason for a failure code and whether such a
// failure becomes an Event at all.
func Reason(code string) (string, bool) {
	_, ok := reasons[code]
	return code, ok
}

// maxNote is the API server's limit on an Event's note, in bytes.
const maxNote = 1024

// note joins a refusal's message and the fix, cut to what the API server
// accepts (on a rune boundary).
func note(message, fix string) string {
	s := message
	if fix != "" {
		s += ". " + fix
	}
	if len(s) <= maxNote {
		return s
	}
	cut := maxNote - len("…")
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
