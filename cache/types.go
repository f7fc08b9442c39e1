package cache

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Key identifies one set of credentials. Every pod on the node that runs as
// the same ServiceAccount with the same role and audience shares one entry,
// so a node makes one STS call per ServiceAccount per refresh, not one per
// pod. Key holds no secret and is safe to log.
type Key struct {
	Namespace      string
	ServiceAccount string
	RoleARN        string
	// Audience is the audience of the ServiceAccount token exchanged with STS.
	Audience string
	// TokenExpiration is the requested lifetime of that token. The same
	// ServiceAccount always yields the same value; it is part of the key so a
	// changed annotation starts a fresh entry instead of mutating a live one.
	TokenExpiration time.Duration
	// SessionName, when set, is the role session name asked of STS (a
	// validated podcreds.io/session-name); empty means the default
	// podcreds@<namespace>.<serviceAccount>.
	SessionName string
	// TargetRoleARN, when set, is a second hop: the credentials served are
	// those of AssumeRole into this role, made with RoleARN's credentials
	// and carrying session tags. Chained sessions last at most one hour.
	TargetRoleARN string
	// ExternalID is passed to the second hop's AssumeRole when set. It is
	// not a secret (IAM documents it as a value to tell tenants apart).
	ExternalID string
}

// FirstHop returns the key of the first hop's credentials: k without its
// second hop. Two target roles of one ServiceAccount share it.
func (k Key) FirstHop() Key {
	k.TargetRoleARN, k.ExternalID = "", ""
	return k
}

// ServedRoleARN is the role whose credentials a pod gets for k: the target
// role when there is a second hop, else RoleARN.
func (k Key) ServedRoleARN() string {
	if k.TargetRoleARN != "" {
		return k.TargetRoleARN
	}
	return k.RoleARN
}

// PodRef names a pod that uses an entry: its ServiceAccount tokens are bound
// to it, so a fetch needs a pod that is alive.
type PodRef struct {
	Namespace string
	Name      string
	UID       types.UID
}

// Credentials are one set of temporary AWS credentials. A *Credentials is
// immutable once the cache has stored it: readers on the hot path share it
// without locks, so nothing may write to it after Fetch returns.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// AccountID is the AWS account of the role, when known.
	AccountID string
	// Expiration is when AWS stops accepting the credentials.
	Expiration time.Time
	// Issued is when podcreds obtained them (IMDS's LastUpdated).
	Issued time.Time

	// containerBody and imdsBody are rendered once when the credentials are
	// stored, so that serving them costs one write, not one JSON encoding.
	containerBody []byte
	imdsBody      []byte
	// expiresAt is Expiration as clients see it (whole seconds), without a
	// monotonic reading: expiry is judged by the wall clock, because the
	// monotonic clock stops while a host or VM is suspended and would keep
	// credentials "fresh" that AWS already refuses.
	expiresAt time.Time
}

// ContainerBody returns the container-credentials endpoint's 200 response
// body. The caller must not modify it.
func (c *Credentials) ContainerBody() []byte { return c.containerBody }

// IMDSBody returns the IMDS security-credentials/<role> response body. The
// caller must not modify it.
func (c *Credentials) IMDSBody() []byte { return c.imdsBody }

// ErrPodGone marks a fetch error caused by the pod the fetch acted for, not
// by the key: the pod no longer exists, or another pod took its name, so no
// token can be bound to it. A Fetcher wraps such errors so that errors.Is
// finds ErrPodGone. The cache then drops that pod from the entry's users and
// fetches again at once as another user; the error is never the entry's.
var ErrPodGone = errors.New("the pod the fetch was bound to is gone")

// Fetcher obtains fresh credentials for a key, using pod's identity (its
// bound ServiceAccount token). Errors should be *failure.Error values, so the
// cache can tell a retriable failure (keep serving what it has, retry with
// backoff) from a final one (drop the entry).
type Fetcher interface {
	Fetch(ctx context.Context, key Key, pod PodRef) (*Credentials, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, key Key, pod PodRef) (*Credentials, error)

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context, key Key, pod PodRef) (*Credentials, error) {
	return f(ctx, key, pod)
}
