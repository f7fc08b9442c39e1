package tokenreq

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"golang.org/x/time/rate"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

// Budget caps one node's STS calls and adapts to throttling. STS's request
// quota is per account and Region, shared by every node: when STS throttles,
// each node halving its own rate (and creeping back up by a tenth of the cap
// per success) drains the excess in a few round trips instead of every node
// retrying into the limit. This is AIMD, as TCP does for the same reason.
//
// Budget is an STSClient wrapping another; it is safe for concurrent use.
type Budget struct {
	next    STSClient
	metrics *metrics.Metrics

	mu      sync.Mutex // guards the limit changes (the limiter itself is safe)
	limiter *rate.Limiter
	max     rate.Limit
	floor   rate.Limit
}

// NewBudget allows perSecond calls (with bursts of burst) through next, and
// never less than a twentieth of that while STS throttles. m may be nil.
func NewBudget(next STSClient, perSecond float64, burst int, m *metrics.Metrics) *Budget {
	b := &Budget{
		next: next, metrics: m,
		limiter: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1)),
		max:     rate.Limit(perSecond),
		floor:   rate.Limit(perSecond / 20),
	}
	b.observe()
	return b
}

// AssumeRoleWithWebIdentity waits for the budget (bounded by ctx: the fetch's
// own timeout), then calls STS and adapts the budget to the answer.
func (b *Budget) AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, opts ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	if err := b.wait(ctx); err != nil {
		return nil, err
	}
	out, err := b.next.AssumeRoleWithWebIdentity(ctx, in, opts...)
	b.adapt(err)
	return out, err
}

// AssumeRole is the second hop, drawn from the same budget: both hops count
// against the account's one STS quota. It fails if the wrapped client cannot
// chain.
func (b *Budget) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, opts ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	next, ok := b.next.(ChainClient)
	if !ok {
		return nil, failure.Final(http.StatusBadRequest, "ChainingDisabled", "this agent's STS client cannot make a second hop", nil)
	}
	if err := b.wait(ctx); err != nil {
		return nil, err
	}
	out, err := next.AssumeRole(ctx, in, opts...)
	b.adapt(err)
	return out, err
}

// wait takes a share of the budget, but never queues far ahead: a slot
// booked at the throttled rate would still be that far away after the rate
// recovers. Past maxBudgetWait the fetch fails retriably and the cache's
// backoff asks again later, at whatever the rate is then.
func (b *Budget) wait(ctx context.Context) error {
	r := b.limiter.Reserve()
	d := r.Delay()
	if d <= 0 {
		return nil
	}
	if d > maxBudgetWait {
		r.Cancel()
		return errBudgetSpent
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		t.Stop()
		r.Cancel()
		return failure.Retriable("STSBudgetExhausted", "this node's STS request budget (--sts-rate, --sts-burst; halved while STS throttles) is spent; retry shortly", 0, ctx.Err())
	}
}

// maxBudgetWait is the longest a call queues for the budget.
const maxBudgetWait = 2 * time.Second

var errBudgetSpent = failure.Retriable("STSBudgetExhausted", "this node's STS request budget (--sts-rate, --sts-burst; halved while STS throttles) is spent; retry shortly", 0, nil)

// Limit is the current allowed rate, for tests and metrics.
func (b *Budget) Limit() float64 { return float64(b.limiter.Limit()) }

func (b *Budget) adapt(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.limiter.Limit()
	switch {
	case isThrottle(err):
		cur = max(cur/2, b.floor)
		if b.metrics != nil {
			b.metrics.STSThrottled.Inc()
		}
	case err == nil && cur < b.max:
		cur = min(cur+b.max/10, b.max)
	default:
		return
	}
	b.limiter.SetLimit(cur)
	b.observe()
}

func (b *Budget) observe() {
	if b.metrics != nil {
		b.metrics.STSBudget.Set(float64(b.limiter.Limit()))
	}
}

// isThrottle reports whether err is STS asking us to slow down.
func isThrottle(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	class, known := stsCodes[apiErr.ErrorCode()]
	if !known {
		class = classifyUnknown(err, apiErr.ErrorFault())
	}
	return class == throttled
}
