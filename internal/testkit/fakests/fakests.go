// Package fakests is an in-process STS for faults a real STS (MinIO) cannot
// produce on demand: latency, throttling, 5xx, outage, short lifetimes. It
// implements tokenreq.STSClient and counts every call.
//
// It does not check the web identity token: what it stands in for is STS's
// timing and failure behaviour, not its verification (the integration tests
// use MinIO for that).
package fakests

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
)

// STS is a scripted STS. The zero value answers at once with 1h
// credentials; set fields before use or through the setters.
type STS struct {
	// Calls counts every AssumeRoleWithWebIdentity, answered or not.
	Calls atomic.Int64
	// ChainCalls counts every AssumeRole (second hop), answered or not.
	ChainCalls atomic.Int64

	mu       sync.Mutex
	lifetime time.Duration
	latency  time.Duration
	fail     error
	now      func() time.Time
	n        int
	chainIn  []sts.AssumeRoleInput
	chainErr error
}

// SetChainFail makes every AssumeRole fail with err (nil: succeed again).
func (s *STS) SetChainFail(err error) { s.mu.Lock(); s.chainErr = err; s.mu.Unlock() }

// ChainInputs returns a copy of every AssumeRole input received, in order.
func (s *STS) ChainInputs() []sts.AssumeRoleInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sts.AssumeRoleInput(nil), s.chainIn...)
}

// AssumeRole implements tokenreq.ChainClient: it records the input and
// answers with credentials for the target role, living at most an hour as
// STS limits chained sessions. It does not check the signature.
func (s *STS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	s.ChainCalls.Add(1)
	s.mu.Lock()
	s.chainIn = append(s.chainIn, *in)
	latency, fail, lifetime, now := s.latency, s.chainErr, s.lifetime, s.now
	s.n++
	n := s.n
	s.mu.Unlock()
	if err := sleep(ctx, latency); err != nil {
		return nil, err
	}
	if fail != nil {
		return nil, fail
	}
	if lifetime <= 0 || lifetime > time.Hour {
		lifetime = time.Hour
	}
	if now == nil {
		now = time.Now
	}
	return &sts.AssumeRoleOutput{
		Credentials: &ststypes.Credentials{
			AccessKeyId:     aws.String(fmt.Sprintf("ASIACHAIN%011d", n)),
			SecretAccessKey: aws.String(fmt.Sprintf("fake-chain-secret-%d", n)),
			SessionToken:    aws.String(fmt.Sprintf("fake-chain-session-%d-%s", n, aws.ToString(in.RoleArn))),
			Expiration:      aws.Time(now().Add(lifetime)),
		},
		AssumedRoleUser: &ststypes.AssumedRoleUser{Arn: aws.String("arn:aws:sts::123456789012:assumed-role/target/" + aws.ToString(in.RoleSessionName))},
	}, nil
}

// New returns an STS issuing credentials that live lifetime.
func New(lifetime time.Duration) *STS { return &STS{lifetime: lifetime} }

// Throttling is the error STS answers when its request rate is exceeded.
var Throttling = &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded", Fault: smithy.FaultClient}

// Unavailable is a 5xx-class STS answer.
var Unavailable = &smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "Service unavailable", Fault: smithy.FaultServer}

// AccessDenied is a final STS answer.
var AccessDenied = &smithy.GenericAPIError{Code: "AccessDenied", Message: "Not authorized to perform sts:AssumeRoleWithWebIdentity", Fault: smithy.FaultClient}

// SetFail makes every call fail with err (nil: succeed again).
func (s *STS) SetFail(err error) { s.mu.Lock(); s.fail = err; s.mu.Unlock() }

// SetLatency makes every call take d (honouring the caller's context).
func (s *STS) SetLatency(d time.Duration) { s.mu.Lock(); s.latency = d; s.mu.Unlock() }

// SetLifetime sets the lifetime of credentials issued from now on.
func (s *STS) SetLifetime(d time.Duration) { s.mu.Lock(); s.lifetime = d; s.mu.Unlock() }

// SetClock makes expirations relative to now() (a fake clock's Now).
func (s *STS) SetClock(now func() time.Time) { s.mu.Lock(); s.now = now; s.mu.Unlock() }

// AssumeRoleWithWebIdentity implements tokenreq.STSClient. The session token
// names the role and a serial number, so tests can tell credentials apart.
func (s *STS) AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, _ ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	s.Calls.Add(1)
	s.mu.Lock()
	latency, fail, lifetime, now := s.latency, s.fail, s.lifetime, s.now
	s.mu.Unlock()
	if err := sleep(ctx, latency); err != nil {
		return nil, err
	}
	if fail != nil {
		return nil, fail
	}
	if lifetime <= 0 {
		lifetime = time.Hour
	}
	if now == nil {
		now = time.Now
	}
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	return &sts.AssumeRoleWithWebIdentityOutput{
		Credentials: &ststypes.Credentials{
			AccessKeyId:     aws.String(fmt.Sprintf("ASIAFAKE%012d", n)),
			SecretAccessKey: aws.String(fmt.Sprintf("fake-secret-%d", n)),
			SessionToken:    aws.String(fmt.Sprintf("fake-session-%d-%s", n, aws.ToString(in.RoleArn))),
			Expiration:      aws.Time(now().Add(lifetime)),
		},
		AssumedRoleUser: &ststypes.AssumedRoleUser{Arn: aws.String("arn:aws:sts::123456789012:assumed-role/fake/" + aws.ToString(in.RoleSessionName))},
	}, nil
}

// sleep waits d (nothing for d ≤ 0), or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
