package roles

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/podcreds/podcreds/failure"
)

// Role selection beyond the ServiceAccount's annotation.
const (
	// PodRoleAnnotation on a pod picks a role other than its ServiceAccount's.
	// It is honoured only if the pod's namespace allows that role.
	PodRoleAnnotation = "podcreds.io/role-arn"
	// AllowedRolesAnnotation on a namespace lists the role ARN patterns its
	// pods may pick, separated by commas or newlines; `*` matches any run of
	// characters except `/`, so it never reaches into a deeper IAM role path
	// (`role/team-a-*` does not match `role/team-a-x/admin`). Without it,
	// pods may not pick roles.
	AllowedRolesAnnotation = "podcreds.io/allowed-roles"
)

// allowedRoles reads a namespace's role patterns, cached like
// ServiceAccounts, and brings d.Until forward to when they expire.
func (r *RoleResolver) allowedRoles(ctx context.Context, namespace string, d *Decision) ([]string, error) {
	n := saName{namespace, ""} // the empty name marks a namespace entry
	if a, ok := r.fresh(n); ok {
		d.Until = earlier(d.Until, a.expires)
		return a.patterns, a.err
	}
	ch := r.group.DoChan("ns:"+namespace, func() (any, error) { // see serviceAccount
		if a, ok := r.fresh(n); ok {
			return a, nil
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		now := r.clock.Now()
		ns, err := r.client.GetNamespace(cctx, namespace)
		var a resolved
		switch {
		case apierrors.IsNotFound(err):
			a = resolved{expires: now.Add(r.negTTL)}
		case apierrors.IsForbidden(err):
			a = resolved{err: failure.Forbidden("get", "namespaces", "namespace "+namespace+", for its "+AllowedRolesAnnotation+" annotation", err), expires: now.Add(r.negTTL)}
		case err != nil:
			r.mu.Lock()
			defer r.mu.Unlock()
			if last, ok := r.answers[n]; ok && last.err == nil { // keep the last answer through an outage
				last.expires = now.Add(r.negTTL)
				r.answers[n] = last
				return last, nil
			}
			return resolved{err: failure.Retriable("NamespaceLookupFailed",
				fmt.Sprintf("cannot read namespace %s from the Kubernetes API", namespace), 0, err)}, nil
		default:
			a = resolved{patterns: splitPatterns(ns.Annotations[AllowedRolesAnnotation]), expires: now.Add(r.ttl)}
		}
		r.mu.Lock()
		r.answers[n] = a
		r.mu.Unlock()
		return a, nil
	})
	select {
	case res := <-ch:
		a := res.Val.(resolved)
		d.Until = earlier(d.Until, a.expires)
		return a.patterns, a.err
	case <-ctx.Done():
		return nil, failure.Retriable("RequestCancelled", "request ended while reading the namespace", 0, ctx.Err())
	}
}

// earlier returns the earlier of a and b.
func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func splitPatterns(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' || r == '\t' })
}

// globMatch reports whether s matches pattern, where `*` matches any run of
// characters other than `/` and everything else matches itself. IAM role
// names cannot contain `/`; a role path can, and a pattern that grants the
// roles of one path level must not grant those nested below it.
//
// Patterns come from namespace annotations, so matching must not blow up on
// a pattern full of stars: both sides are cut at '/', segment for segment,
// and each segment is matched by the greedy algorithm that backtracks only to
// the last star, O(len(pattern)·len(s)) at worst.
func globMatch(pattern, s string) bool {
	for {
		pi, si := strings.IndexByte(pattern, '/'), strings.IndexByte(s, '/')
		if (pi < 0) != (si < 0) {
			return false
		}
		if pi < 0 {
			return segmentMatch(pattern, s)
		}
		if !segmentMatch(pattern[:pi], s[:si]) {
			return false
		}
		pattern, s = pattern[pi+1:], s[si+1:]
	}
}

// segmentMatch matches within one segment, where `*` matches any run.
func segmentMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0 // the last star seen, and where its run would end
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			mark++ // let the last star take one more byte
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// checkAccount enforces the account allow-list (empty: every account).
func (r *RoleResolver) checkAccount(role string) error {
	if len(r.accounts) == 0 {
		return nil
	}
	if _, ok := r.accounts[accountOf(role)]; ok {
		return nil
	}
	return failure.Final(http.StatusForbidden, "AccountNotAllowed",
		fmt.Sprintf("role %s is not in an account this agent may serve (its --allowed-accounts): use a role of an allowed account", role), nil)
}

// accountOf returns the account field of an ARN (arn:partition:service:
// region:ACCOUNT:resource), without allocating.
func accountOf(arn string) string {
	field, start := 0, 0
	for i := 0; i < len(arn); i++ {
		if arn[i] != ':' {
			continue
		}
		if field == 4 {
			return arn[start:i]
		}
		field++
		start = i + 1
	}
	return ""
}
