package agent

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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/failure"
)

// IRSA's ServiceAccount annotations, honoured as EKS does.
const (
	RoleAnnotation            = "eks.amazonaws.com/role-arn"
	AudienceAnnotation        = "eks.amazonaws.com/audience"
	TokenExpirationAnnotation = "eks.amazonaws.com/token-expiration"
)

// MinTokenExpiration is the shortest token the TokenRequest API issues.
const MinTokenExpiration = 10 * time.Minute

// RoleResolver maps a ServiceAccount to the cache key of its credentials. It
// reads ServiceAccounts on demand and keeps each answer for a short time: a
// cluster-wide ServiceAccount watch on every node would not scale to
// thousands of nodes, and a node only ever needs the few its pods run as.
type RoleResolver struct {
	client          kubernetes.Interface
	clock           clock.PassiveClock
	ttl, negTTL     time.Duration
	defaultAudience string
	defaultExpiry   time.Duration
	group           singleflight.Group

	mu      sync.RWMutex
	answers map[saName]resolved
}

type saName struct{ namespace, name string }

type resolved struct {
	key     cache.Key
	err     error
	expires time.Time
}

// NewRoleResolver caches answers for ttl (a missing role or ServiceAccount
// for a fifth of it, so a newly annotated ServiceAccount works quickly).
func NewRoleResolver(client kubernetes.Interface, clk clock.PassiveClock, ttl time.Duration, defaultAudience string, defaultExpiry time.Duration) *RoleResolver {
	return &RoleResolver{
		client: client, clock: clk, ttl: ttl, negTTL: ttl / 5,
		defaultAudience: defaultAudience, defaultExpiry: defaultExpiry,
		answers: map[saName]resolved{},
	}
}

// Resolve returns the credentials key for ServiceAccount namespace/name, or a
// final 404 naming the ServiceAccount when it has no role.
func (r *RoleResolver) Resolve(ctx context.Context, namespace, name string) (cache.Key, error) {
	n := saName{namespace, name}
	r.mu.RLock()
	a, ok := r.answers[n]
	r.mu.RUnlock()
	if ok && r.clock.Now().Before(a.expires) {
		return a.key, a.err
	}
	ch := r.group.DoChan(namespace+"/"+name, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		a := r.fetch(cctx, namespace, name)
		if a.err == nil || !failure.IsRetriable(a.err) { // never cache a transient failure
			r.mu.Lock()
			r.answers[n] = a
			r.mu.Unlock()
		}
		return a, nil
	})
	select {
	case res := <-ch:
		a := res.Val.(resolved)
		return a.key, a.err
	case <-ctx.Done():
		return cache.Key{}, failure.Retriable("RequestCancelled", "request ended while reading the ServiceAccount", 0, ctx.Err())
	}
}

func (r *RoleResolver) fetch(ctx context.Context, namespace, name string) resolved {
	now := r.clock.Now()
	neg := func(err error) resolved { return resolved{err: err, expires: now.Add(r.negTTL)} }
	sa, err := r.client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return neg(failure.Final(http.StatusNotFound, "ServiceAccountNotFound",
			fmt.Sprintf("serviceaccount %s/%s does not exist", namespace, name), err))
	case err != nil:
		return resolved{err: failure.Retriable("ServiceAccountLookupFailed",
			fmt.Sprintf("cannot read serviceaccount %s/%s from the Kubernetes API", namespace, name), 0, err)}
	}
	role := strings.TrimSpace(sa.Annotations[RoleAnnotation])
	if role == "" {
		return neg(failure.Final(http.StatusNotFound, "NoRole",
			fmt.Sprintf("serviceaccount %s/%s has no %s annotation", namespace, name, RoleAnnotation), nil))
	}
	if !strings.HasPrefix(role, "arn:") || strings.Count(role, ":") < 5 {
		return neg(failure.Final(http.StatusNotFound, "InvalidRole",
			fmt.Sprintf("serviceaccount %s/%s: annotation %s is not an ARN: %q", namespace, name, RoleAnnotation, role), nil))
	}
	key := cache.Key{Namespace: namespace, ServiceAccount: name, RoleARN: role, Audience: r.defaultAudience, TokenExpiration: r.defaultExpiry}
	if aud := strings.TrimSpace(sa.Annotations[AudienceAnnotation]); aud != "" {
		key.Audience = aud
	}
	if v := strings.TrimSpace(sa.Annotations[TokenExpirationAnnotation]); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || time.Duration(secs)*time.Second < MinTokenExpiration || secs > 48*3600 {
			return neg(failure.Final(http.StatusNotFound, "InvalidTokenExpiration",
				fmt.Sprintf("serviceaccount %s/%s: annotation %s must be whole seconds from 600 to 172800, got %q", namespace, name, TokenExpirationAnnotation, v), nil))
		}
		key.TokenExpiration = time.Duration(secs) * time.Second
	}
	return resolved{key: key, expires: now.Add(r.ttl)}
}
