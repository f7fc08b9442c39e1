package tokenreq

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

type scriptedSTS struct {
	calls atomic.Int64
	err   atomic.Pointer[error]
}

func (s *scriptedSTS) AssumeRoleWithWebIdentity(context.Context, *sts.AssumeRoleWithWebIdentityInput, ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	s.calls.Add(1)
	if e := s.err.Load(); e != nil {
		return nil, *e
	}
	return &sts.AssumeRoleWithWebIdentityOutput{}, nil
}

func TestBudgetHalvesOnThrottlingAndRecovers(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	next := &scriptedSTS{}
	b := NewBudget(next, 100, 100, m)
	throttle := error(&smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"})
	next.err.Store(&throttle)
	want := 100.0
	for range 3 {
		_, _ = b.AssumeRoleWithWebIdentity(context.Background(), &sts.AssumeRoleWithWebIdentityInput{})
		want /= 2
		if got := b.Limit(); got != want {
			t.Fatalf("after throttling the budget is %v/s, want %v/s", got, want)
		}
	}
	for range 10 {
		_, _ = b.AssumeRoleWithWebIdentity(context.Background(), &sts.AssumeRoleWithWebIdentityInput{})
	}
	if got := b.Limit(); got != 5 {
		t.Fatalf("the budget fell to %v/s, want the floor of 5/s (a twentieth)", got)
	}
	if n := testutil.ToFloat64(m.STSThrottled); n != 13 {
		t.Errorf("%v throttles counted, want 13", n)
	}
	next.err.Store(nil)
	for i := range 10 {
		_, _ = b.AssumeRoleWithWebIdentity(context.Background(), &sts.AssumeRoleWithWebIdentityInput{})
		if want := min(5+10*float64(i+1), 100); b.Limit() != want {
			t.Fatalf("after %d successes the budget is %v/s, want %v/s (additive increase)", i+1, b.Limit(), want)
		}
	}
	if g := testutil.ToFloat64(m.STSBudget); g != 100 {
		t.Errorf("budget gauge %v, want 100", g)
	}
	other := error(&smithy.GenericAPIError{Code: "AccessDenied"})
	next.err.Store(&other)
	_, _ = b.AssumeRoleWithWebIdentity(context.Background(), &sts.AssumeRoleWithWebIdentityInput{})
	if b.Limit() != 100 {
		t.Errorf("a non-throttling error changed the budget to %v", b.Limit())
	}
}

func TestBudgetBoundsTheCallRate(t *testing.T) {
	next := &scriptedSTS{}
	b := NewBudget(next, 20, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var refused int
	for range 50 {
		if _, err := b.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{}); err != nil {
			var fe *failure.Error
			if !errors.As(err, &fe) || !fe.Retriable() {
				t.Fatalf("an exhausted budget answered %v, want a retriable error", err)
			}
			refused++
		}
	}
	// 20/s with a burst of 1 for 300ms: at most 1 + 6 calls reach STS.
	if n := next.calls.Load(); n > 7 || refused == 0 {
		t.Fatalf("%d calls reached STS in 300ms at 20/s (%d refused)", n, refused)
	}
}
