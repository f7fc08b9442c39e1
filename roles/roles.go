// Package roles decides which IAM role a pod's credentials are for: its
// ServiceAccount's IRSA annotations, or a role the pod picks that its
// namespace allows. The node agent serves by this decision and the admission
// webhook injects by it, so the two can never disagree.
package roles

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/kube"
)

// IRSA's ServiceAccount annotations, honoured as EKS does.
const (
	RoleAnnotation            = "eks.amazonaws.com/role-arn"
	AudienceAnnotation        = "eks.amazonaws.com/audience"
	TokenExpirationAnnotation = "eks.amazonaws.com/token-expiration"
)

// MinTokenExpiration is the shortest token the TokenRequest API issues.
const MinTokenExpiration = 10 * time.Minute

// Pod is what the decision reads of a pod.
type Pod struct {
	Namespace, Name string
	ServiceAccount  string
	// RoleARN is the role the pod's PodRoleAnnotation asks for, if any.
	RoleARN string
	// TargetRoleARN is the target role the pod's TargetRoleAnnotation
	// names, if any.
	TargetRoleARN string
}

// String is namespace/name, for messages.
func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// Client is what the decision reads from the Kubernetes API: the agent
// passes its API client, the webhook its ServiceAccount informer with a live
// read behind it.
type Client interface {
	GetServiceAccount(ctx context.Context, namespace, name string) (*kube.ServiceAccount, error)
	GetNamespace(ctx context.Context, name string) (*kube.Namespace, error)
}

// RoleResolver maps a ServiceAccount to the cache key of its credentials. It
// reads ServiceAccounts on demand and keeps each answer for a short time: a
// cluster-wide ServiceAccount watch on every node would not scale to
// thousands of nodes, and a node only ever needs the few its pods run as.
type RoleResolver struct {
	client          Client
	clock           clock.PassiveClock
	ttl, negTTL     time.Duration
	defaultAudience string
	defaultExpiry   time.Duration
	accounts        map[string]struct{} // allowed role accounts; empty: all
	group           singleflight.Group

	mu      sync.RWMutex
	answers map[saName]resolved
}

type saName struct{ namespace, name string }

type resolved struct {
	key      cache.Key // RoleARN empty when the ServiceAccount names none
	patterns []string  // a namespace's allowed role patterns
	err      error
	expires  time.Time
}

// NewRoleResolver caches answers for ttl (a missing role or ServiceAccount
// for a fifth of it, so a newly annotated ServiceAccount works quickly).
// accounts, if not empty, are the only AWS accounts whose roles are served.
func NewRoleResolver(client Client, clk clock.PassiveClock, ttl time.Duration, defaultAudience string, defaultExpiry time.Duration, accounts []string) *RoleResolver {
	r := &RoleResolver{
		client: client, clock: clk, ttl: ttl, negTTL: ttl / 5,
		defaultAudience: defaultAudience, defaultExpiry: defaultExpiry,
		answers: map[saName]resolved{},
	}
	if len(accounts) > 0 {
		r.accounts = map[string]struct{}{}
		for _, a := range accounts {
			r.accounts[a] = struct{}{}
		}
	}
	return r
}

// Resolve returns the credentials key for pod: its ServiceAccount's role, or
// the role its PodRoleAnnotation picks if its namespace allows that role.
// There is no fallback: a pod without a role of its own gets a final 404
// naming its ServiceAccount, a disallowed choice a final 403.
func (r *RoleResolver) Resolve(ctx context.Context, pod Pod) (cache.Key, error) {
	d := r.Decide(ctx, pod)
	return d.Key, d.Err
}

// Where a role came from, in a Decision.
const (
	FromServiceAccount = "serviceaccount"
	FromPod            = "pod"
)

// Decision is the role decision for a pod and where each part came from:
// what Resolve answers, with the provenance `podcreds explain` shows. Key
// holds what was decided before a refusal (Err), so a refused pod's report
// still names the roles involved.
type Decision struct {
	Key cache.Key
	// RoleFrom is FromServiceAccount (its RoleAnnotation) or FromPod (its
	// PodRoleAnnotation, allowed by the namespace's RolePattern).
	RoleFrom, RolePattern string
	// TargetFrom and TargetPattern are the same for the second hop.
	TargetFrom, TargetPattern string
	Err                       error
	// Until is when the first of the answers the decision rests on (the
	// ServiceAccount's, and the namespace's if it was read) expires. Those
	// answers are replaced only once they have expired, so until then the
	// same pod gets the same decision: a caller may keep a successful one
	// and skip deciding again. Zero when Err is set.
	Until time.Time
}

// Decide is Resolve with the provenance of its answer. Only a successful
// decision has an Until, so only one is ever kept by a caller.
func (r *RoleResolver) Decide(ctx context.Context, pod Pod) Decision {
	d := r.decide(ctx, pod)
	if d.Err != nil {
		d.Until = time.Time{}
	}
	return d
}

func (r *RoleResolver) decide(ctx context.Context, pod Pod) Decision {
	var d Decision
	if pod.ServiceAccount == "" {
		// Only mirror (static) pods have no ServiceAccount: the API server
		// fills in "default" for every other pod. A mirror pod may not use
		// a ServiceAccount at all, so it has no role and no token to bind.
		d.Err = failure.Final(http.StatusNotFound, "NoServiceAccount",
			fmt.Sprintf("pod %s runs without a ServiceAccount (a static pod); podcreds serves only pods that run as a ServiceAccount with an %s annotation", pod, RoleAnnotation), nil)
		return d
	}
	sa := r.serviceAccount(ctx, pod.Namespace, pod.ServiceAccount)
	d.Key, d.Until = sa.key, sa.expires
	if sa.err != nil {
		d.Err = sa.err
		return d
	}
	key := sa.key
	if pod.RoleARN != "" {
		d.RoleFrom = FromPod
		patterns, err := r.allowedRoles(ctx, pod.Namespace, &d)
		if err != nil {
			d.Err = err
			return d
		}
		d.Key.RoleARN = pod.RoleARN
		if d.RolePattern = firstMatch(patterns, pod.RoleARN); !validARN(pod.RoleARN) || d.RolePattern == "" {
			d.RolePattern = ""
			d.Err = failure.Final(http.StatusForbidden, "RoleNotAllowed",
				fmt.Sprintf("pod %s asks for role %s, which namespace %s does not allow (annotation %s)", pod, pod.RoleARN, pod.Namespace, AllowedRolesAnnotation), nil)
			return d
		}
	} else if key.RoleARN == "" {
		d.Err = failure.Final(http.StatusNotFound, "NoRole",
			fmt.Sprintf("serviceaccount %s/%s has no %s annotation: annotate it with the IAM role's ARN (or let the pod pick one with %s, if its namespace allows)",
				pod.Namespace, pod.ServiceAccount, RoleAnnotation, PodRoleAnnotation), nil)
		return d
	} else {
		d.RoleFrom = FromServiceAccount
	}
	if d.Err = r.checkAccount(d.Key.RoleARN); d.Err != nil {
		return d
	}
	d.Err = r.resolveTarget(ctx, pod, &d)
	return d
}

// firstMatch returns the first of patterns that s matches, or "".
func firstMatch(patterns []string, s string) string {
	for _, p := range patterns {
		if globMatch(p, s) {
			return p
		}
	}
	return ""
}

func validARN(s string) bool { return strings.HasPrefix(s, "arn:") && strings.Count(s, ":") >= 5 }

// serviceAccount returns the answer for a ServiceAccount: the key it gives
// (RoleARN possibly empty) or why it gives none, and until when.
func (r *RoleResolver) serviceAccount(ctx context.Context, namespace, name string) resolved {
	n := saName{namespace, name}
	if a, ok := r.fresh(n); ok {
		return a
	}
	// Keys carry their kind: a ServiceAccount "x" in namespace "ns" and the
	// namespace "x" must never share a flight (allowedRoles uses "ns:").
	// Neither name may contain ':' or '/', so no two keys collide.
	ch := r.group.DoChan("sa:"+namespace+"/"+name, func() (any, error) {
		// Looked up again inside the flight: a caller that missed above
		// while another flight was storing its answer would otherwise ask
		// the API server a second time.
		if a, ok := r.fresh(n); ok {
			return a, nil
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		a := r.fetch(cctx, namespace, name)
		r.mu.Lock()
		defer r.mu.Unlock()
		if a.err != nil && failure.IsRetriable(a.err) {
			// The API server is unreachable: keep answering with what we
			// knew (an API outage must not take down pods that were being
			// served), and ask again after a short while.
			if last, ok := r.answers[n]; ok && !failure.IsRetriable(last.err) {
				last.expires = r.clock.Now().Add(r.negTTL)
				r.answers[n] = last
				return last, nil
			}
			return a, nil // never cache a transient failure
		}
		r.answers[n] = a
		return a, nil
	})
	select {
	case res := <-ch:
		return res.Val.(resolved)
	case <-ctx.Done():
		return resolved{err: failure.Retriable("RequestCancelled", "request ended while reading the ServiceAccount", 0, ctx.Err())}
	}
}

// fresh returns the cached answer for n if it has not expired.
func (r *RoleResolver) fresh(n saName) (resolved, bool) {
	r.mu.RLock()
	a, ok := r.answers[n]
	r.mu.RUnlock()
	return a, ok && r.clock.Now().Before(a.expires)
}

func (r *RoleResolver) fetch(ctx context.Context, namespace, name string) resolved {
	now := r.clock.Now()
	neg := func(err error) resolved { return resolved{err: err, expires: now.Add(r.negTTL)} }
	sa, err := r.client.GetServiceAccount(ctx, namespace, name)
	switch {
	case apierrors.IsNotFound(err):
		return neg(failure.Final(http.StatusNotFound, "ServiceAccountNotFound",
			fmt.Sprintf("serviceaccount %s/%s does not exist: create it, or run the pod as one that does", namespace, name), err))
	case apierrors.IsForbidden(err):
		// A missing grant is the operator's to fix, not a pod's to retry;
		// remembered only briefly, so a fixed ClusterRole takes effect soon.
		return neg(failure.Forbidden("get", "serviceaccounts", "serviceaccount "+namespace+"/"+name+", for its role", err))
	case err != nil:
		return resolved{err: failure.Retriable("ServiceAccountLookupFailed",
			fmt.Sprintf("cannot read serviceaccount %s/%s from the Kubernetes API", namespace, name), 0, err)}
	}
	role := strings.TrimSpace(sa.Annotations[RoleAnnotation])
	if role != "" && !validARN(role) {
		return neg(failure.Final(http.StatusBadRequest, "InvalidRole",
			fmt.Sprintf("serviceaccount %s/%s: annotation %s is not an ARN: %q", namespace, name, RoleAnnotation, role), nil))
	}
	key := cache.Key{Namespace: namespace, ServiceAccount: name, RoleARN: role, Audience: r.defaultAudience, TokenExpiration: r.defaultExpiry}
	if aud := strings.TrimSpace(sa.Annotations[AudienceAnnotation]); aud != "" {
		key.Audience = aud
	}
	if v := strings.TrimSpace(sa.Annotations[TokenExpirationAnnotation]); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || time.Duration(secs)*time.Second < MinTokenExpiration || secs > 48*3600 {
			return neg(failure.Final(http.StatusBadRequest, "InvalidTokenExpiration",
				fmt.Sprintf("serviceaccount %s/%s: annotation %s must be whole seconds from 600 to 172800, got %q", namespace, name, TokenExpirationAnnotation, v), nil))
		}
		key.TokenExpiration = time.Duration(secs) * time.Second
	}
	if err := chainAnnotations(&key, sa.Annotations); err != nil {
		return neg(err)
	}
	expires := now.Add(r.ttl)
	if role == "" {
		expires = now.Add(r.negTTL) // so a newly annotated ServiceAccount works soon
	}
	return resolved{key: key, expires: expires}
}
