package tokenreq

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
)

// ChainClient is the STS operation of the optional second hop. *sts.Client
// implements it; the first hop's credentials sign each call (passed per call
// through optFns, so one anonymous client serves both hops).
type ChainClient interface {
	AssumeRole(ctx context.Context, params *sts.AssumeRoleInput,
		optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
}

var _ ChainClient = (*sts.Client)(nil)

// Session tag keys of the second hop. They are transitive, so a further
// AssumeRole from the target role keeps them, and they are the same for
// every pod of a ServiceAccount: credentials stay shared per ServiceAccount
// and role on the node (a per-pod tag would mean one STS call per pod).
const (
	TagNamespace      = "kubernetes-namespace"
	TagServiceAccount = "kubernetes-service-account"
	TagCluster        = "kubernetes-cluster"
)

// chainedSessionLimit is the longest session STS grants a chained
// AssumeRole, whatever the target role's MaxSessionDuration.
const chainedSessionLimit = 3600

// firstHopMargin is how long a cached first hop must still be valid to sign
// a second hop: the call takes a moment, and its answer does not depend on
// the first session's remaining life.
const firstHopMargin = 5 * time.Minute

// chainTags returns the session tags and transitive keys for key.
func (e *Exchanger) chainTags(key cache.Key) ([]ststypes.Tag, []string) {
	tags := []ststypes.Tag{
		{Key: aws.String(TagNamespace), Value: aws.String(key.Namespace)},
		{Key: aws.String(TagServiceAccount), Value: aws.String(key.ServiceAccount)},
	}
	if e.cluster != "" {
		tags = append(tags, ststypes.Tag{Key: aws.String(TagCluster), Value: aws.String(e.cluster)})
	}
	keys := make([]string, len(tags))
	for i, t := range tags {
		keys[i] = *t.Key
	}
	return tags, keys
}

// fetchChained serves a key with a second hop: the first hop's credentials
// (cached on their own, so a refused second hop costs no first-hop call
// when it is retried), then AssumeRole into the target role with session
// tags. The two hops share the STS budget (the same client) and the
// caller's singleflight (the cache's, per key); concurrent keys of one
// ServiceAccount share one first hop through e.firstHops.
func (e *Exchanger) fetchChained(ctx context.Context, key cache.Key, pod cache.PodRef, who string) (*cache.Credentials, error) {
	if e.chain == nil {
		return nil, failure.Final(http.StatusBadRequest, "ChainingDisabled",
			fmt.Sprintf("%s names target role %s, but this agent has no second-hop STS client", who, key.TargetRoleARN), nil)
	}
	first, err := e.firstHop(ctx, key.FirstHop(), pod, who)
	if err != nil {
		return nil, err
	}
	creds, ferr := e.assumeTarget(ctx, key, first, who)
	if ferr != nil && ferr.Code == expired.code {
		// The first hop's session was refused as expired (a clock step, or
		// STS revoked it): drop it and try once more with a fresh one.
		e.forgetFirstHop(key.FirstHop(), first)
		if first, err = e.firstHop(ctx, key.FirstHop(), pod, who); err != nil {
			return nil, err
		}
		creds, ferr = e.assumeTarget(ctx, key, first, who)
	}
	if ferr != nil {
		return nil, ferr
	}
	return creds, nil
}

// firstHop returns valid first-hop credentials for key (which has no
// target), from e.firstHops or from one AssumeRoleWithWebIdentity shared by
// concurrent callers.
func (e *Exchanger) firstHop(ctx context.Context, key cache.Key, pod cache.PodRef, who string) (*cache.Credentials, error) {
	if c := e.cachedFirstHop(key); c != nil {
		return c, nil
	}
	ch := e.hop1.DoChan(fmt.Sprintf("%+v", key), func() (any, error) {
		// Looked up again inside the flight: a caller that missed above
		// while another flight was storing its result would otherwise
		// start a second AssumeRoleWithWebIdentity for the same key.
		if c := e.cachedFirstHop(key); c != nil {
			return c, nil
		}
		c, err := e.fetchDirect(context.WithoutCancel(ctx), key, pod, who)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		e.firstHops[key] = c
		e.mu.Unlock()
		return c, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*cache.Credentials), nil
	case <-ctx.Done():
		return nil, failure.Retriable("RequestCancelled", "request ended while assuming the first-hop role for "+who, 0, ctx.Err())
	}
}

// cachedFirstHop returns key's cached first hop if it is valid for long
// enough to sign a second hop, else nil.
func (e *Exchanger) cachedFirstHop(key cache.Key) *cache.Credentials {
	e.mu.Lock()
	c, ok := e.firstHops[key]
	e.mu.Unlock()
	if ok && e.clock.Now().Add(firstHopMargin).Before(c.Expiration) {
		return c
	}
	return nil
}

// forgetFirstHop drops c if it is still the cached first hop of key.
func (e *Exchanger) forgetFirstHop(key cache.Key, c *cache.Credentials) {
	e.mu.Lock()
	if e.firstHops[key] == c {
		delete(e.firstHops, key)
	}
	e.mu.Unlock()
}

// ForgetFirstHops drops every cached first hop whose ServiceAccount is
// namespace/name (its annotations changed or it was deleted).
func (e *Exchanger) ForgetFirstHops(namespace, name string) {
	e.mu.Lock()
	for k := range e.firstHops {
		if k.Namespace == namespace && k.ServiceAccount == name {
			delete(e.firstHops, k)
		}
	}
	e.mu.Unlock()
}

// assumeTarget makes the second hop, signed with first.
func (e *Exchanger) assumeTarget(ctx context.Context, key cache.Key, first *cache.Credentials, who string) (*cache.Credentials, *failure.Error) {
	tags, transitive := e.chainTags(key)
	in := &sts.AssumeRoleInput{
		RoleArn:           aws.String(key.TargetRoleARN),
		RoleSessionName:   aws.String(e.sessionName(key)),
		DurationSeconds:   aws.Int32(min(e.duration, chainedSessionLimit)),
		Tags:              tags,
		TransitiveTagKeys: transitive,
	}
	if key.ExternalID != "" {
		in.ExternalId = aws.String(key.ExternalID)
	}
	signer := credentials.NewStaticCredentialsProvider(first.AccessKeyID, first.SecretAccessKey, first.SessionToken)
	start := time.Now()
	out, err := e.chain.AssumeRole(ctx, in, func(o *sts.Options) { o.Credentials = signer })
	var fe *failure.Error
	if err != nil {
		fe = classifySTSError(err, first.SessionToken, key.TargetRoleARN, who+" (second hop from "+key.RoleARN+")")
		if fe.Code == denied.code {
			// Its own code: the fix is in the target's trust policy, not the
			// first role's (AccessDenied).
			msg := strings.TrimSuffix(fe.Message, hint(denied)) + " (the target role's trust policy must allow sts:AssumeRole and sts:TagSession to " + key.RoleARN + ", with a matching sts:ExternalId condition if any; docs/session-tags.md)"
			fe = failure.Final(http.StatusForbidden, "TargetRoleDenied", msg, fe.Err)
		}
	}
	e.countHop(hopTarget, start, fe)
	if fe != nil {
		return nil, fe
	}
	if out == nil || out.Credentials == nil || out.Credentials.Expiration == nil ||
		aws.ToString(out.Credentials.AccessKeyId) == "" || aws.ToString(out.Credentials.SecretAccessKey) == "" ||
		aws.ToString(out.Credentials.SessionToken) == "" {
		return nil, failure.Retriable("InternalError",
			"STS answered AssumeRole without complete credentials for target role "+key.TargetRoleARN+" ("+who+")", 0, nil)
	}
	account := ""
	if out.AssumedRoleUser != nil {
		account = accountID(aws.ToString(out.AssumedRoleUser.Arn))
	}
	if account == "" {
		account = accountID(key.TargetRoleARN)
	}
	c := out.Credentials
	return cache.NewCredentials(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken, account,
		e.clock.Now(), c.Expiration.UTC()), nil
}
