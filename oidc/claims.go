package oidc

import (
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/apimachinery/pkg/types"
)

// ObjectRef names a Kubernetes object a token is bound to.
type ObjectRef struct {
	Name string
	UID  types.UID
}

// Claims is what a verified token says. Verify returns a fresh copy to every
// caller, so callers may keep or modify it.
type Claims struct {
	// Subject is sub, for ServiceAccount tokens
	// "system:serviceaccount:<namespace>:<name>".
	Subject string
	// Issuer is iss (always the configured issuer).
	Issuer string
	// Audience is aud as a list (it contains the configured audience).
	Audience []string
	// Expiry is exp; NotBefore (nbf) and IssuedAt (iat) are zero when the
	// token does not carry them.
	Expiry    time.Time
	NotBefore time.Time
	IssuedAt  time.Time

	// Namespace is kubernetes.io.namespace.
	Namespace string
	// ServiceAccount, Pod and Node are kubernetes.io.serviceaccount,
	// kubernetes.io.pod and kubernetes.io.node; Pod and Node are zero for a
	// token not bound to a pod.
	ServiceAccount ObjectRef
	Pod            ObjectRef
	Node           ObjectRef
}

func (c *Claims) clone() *Claims {
	cc := *c
	cc.Audience = slices.Clone(c.Audience)
	return &cc
}

// payload is what parseClaims reads from a token, decoded by go-jose's JSON
// package: member names match exactly (encoding/json would match "ISS" to
// iss) and a duplicate member anywhere is an error, so no two readers of the
// same bytes can disagree about what they say. Unknown claims are ignored.
type payload struct {
	jwt.Claims
	Kubernetes *struct {
		Namespace      string `json:"namespace"`
		ServiceAccount ref    `json:"serviceaccount"`
		Pod            ref    `json:"pod"`
		Node           ref    `json:"node"`
	} `json:"kubernetes.io"`
}

type ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

func (r ref) object() ObjectRef { return ObjectRef{Name: r.Name, UID: types.UID(r.UID)} }

// parseClaims reads the claims it knows from a token's payload. A claim of
// the wrong type is ErrMalformed; a missing one is left zero for validate to
// judge.
func parseClaims(b []byte) (*Claims, error) {
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, errorf(ErrMalformed, "claims: %s", quote(err.Error()))
	}
	c := &Claims{Subject: p.Subject, Issuer: p.Issuer, Audience: p.Audience}
	for _, d := range []struct {
		to   *time.Time
		from *jwt.NumericDate
	}{{&c.Expiry, p.Expiry}, {&c.NotBefore, p.NotBefore}, {&c.IssuedAt, p.IssuedAt}} {
		if d.from != nil {
			*d.to = d.from.Time()
		}
	}
	if k := p.Kubernetes; k != nil {
		c.Namespace = k.Namespace
		c.ServiceAccount, c.Pod, c.Node = k.ServiceAccount.object(), k.Pod.object(), k.Node.object()
	}
	return c, nil
}

// validate applies the time, issuer and audience rules at now.
func (c *Claims) validate(now time.Time, issuer, aud string, leeway time.Duration) error {
	switch {
	case c.Issuer != issuer:
		return errorf(ErrIssuer, "iss %s is not %s", quote(c.Issuer), quote(issuer))
	case !slices.Contains(c.Audience, aud):
		return errorf(ErrAudience, "aud does not contain %s", quote(aud))
	case c.Expiry.IsZero():
		return errorf(ErrExpired, "token has no exp")
	case !now.Before(c.Expiry.Add(leeway)):
		return errorf(ErrExpired, "expired at %s (leeway %s)", c.Expiry.UTC().Format(time.RFC3339), leeway)
	case !c.NotBefore.IsZero() && now.Before(c.NotBefore.Add(-leeway)):
		return errorf(ErrNotYetValid, "not valid before %s (leeway %s)", c.NotBefore.UTC().Format(time.RFC3339), leeway)
	}
	return nil
}
