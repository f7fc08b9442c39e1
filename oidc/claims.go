package oidc

import (
	"encoding/json"
	"math"
	"slices"
	"time"

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

// parseClaims reads the claims it knows from a token's payload. A claim of
// the wrong type is ErrMalformed; a missing one is left zero for validate to
// judge. Unknown claims are ignored.
func parseClaims(o object) (*Claims, error) {
	c := &Claims{}
	var err error
	fail := func(what string) (*Claims, error) {
		return nil, errorf(ErrMalformed, "claim %s has the wrong type", what)
	}
	if c.Issuer, _, err = o.str("iss"); err != nil {
		return fail("iss")
	}
	if c.Subject, _, err = o.str("sub"); err != nil {
		return fail("sub")
	}
	if c.Audience, err = audience(o["aud"]); err != nil {
		return fail("aud")
	}
	for name, t := range map[string]*time.Time{"exp": &c.Expiry, "nbf": &c.NotBefore, "iat": &c.IssuedAt} {
		if *t, err = numericDate(o[name]); err != nil {
			return fail(name)
		}
	}
	if raw, ok := o["kubernetes.io"]; ok {
		if err := c.readKubernetes(raw); err != nil {
			return fail("kubernetes.io")
		}
	}
	return c, nil
}

// readKubernetes reads the kubernetes.io claim with the same exact-name,
// no-duplicates rules as the rest of the token.
func (c *Claims) readKubernetes(raw json.RawMessage) error {
	k, err := decodeObject(raw)
	if err != nil {
		return err
	}
	if c.Namespace, _, err = k.str("namespace"); err != nil {
		return err
	}
	for name, ref := range map[string]*ObjectRef{"serviceaccount": &c.ServiceAccount, "pod": &c.Pod, "node": &c.Node} {
		raw, ok := k[name]
		if !ok {
			continue
		}
		r, err := decodeObject(raw)
		if err != nil {
			return err
		}
		if ref.Name, _, err = r.str("name"); err != nil {
			return err
		}
		uid, _, err := r.str("uid")
		if err != nil {
			return err
		}
		ref.UID = types.UID(uid)
	}
	return nil
}

// audience reads aud, which RFC 7519 allows as one string or an array of
// strings. Absent is nil.
func audience(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, nil
	}
	var one string
	if len(raw) > 0 && raw[0] == '"' {
		err := json.Unmarshal(raw, &one)
		return []string{one}, err
	}
	var many []string
	if len(raw) == 0 || raw[0] != '[' {
		return nil, errorf(ErrMalformed, "aud is neither a string nor an array")
	}
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, err
	}
	return many, nil
}

// maxNumericDate is far enough in the future for any token and keeps the
// conversion to time.Time exact.
const maxNumericDate = 1 << 40

// numericDate reads a NumericDate (seconds since the epoch, fractions
// allowed). Absent is the zero time; null, strings and out-of-range numbers
// are errors.
func numericDate(raw json.RawMessage) (time.Time, error) {
	if raw == nil {
		return time.Time{}, nil
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, errorf(ErrMalformed, "not a number")
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || f < 0 || f > maxNumericDate || math.IsNaN(f) {
		return time.Time{}, errorf(ErrMalformed, "not a date")
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), nil
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
