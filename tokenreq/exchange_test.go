package tokenreq

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

// fakeSTS is a hand-written STSClient: it records inputs and answers with out
// or err.
type fakeSTS struct {
	calls atomic.Int32

	mu     sync.Mutex
	inputs []sts.AssumeRoleWithWebIdentityInput
	out    *sts.AssumeRoleWithWebIdentityOutput
	err    error
	// maxSession, when set, refuses longer DurationSeconds as STS does a
	// role's MaxSessionDuration.
	maxSession int32
}

func (f *fakeSTS) AssumeRoleWithWebIdentity(_ context.Context, in *sts.AssumeRoleWithWebIdentityInput,
	_ ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inputs = append(f.inputs, *in)
	if f.maxSession > 0 && aws.ToInt32(in.DurationSeconds) > f.maxSession {
		return nil, &smithy.GenericAPIError{Code: "ValidationError", Fault: smithy.FaultClient,
			Message: "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."}
	}
	return f.out, f.err
}

func (f *fakeSTS) durations() []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int32
	for _, in := range f.inputs {
		out = append(out, aws.ToInt32(in.DurationSeconds))
	}
	return out
}

func (f *fakeSTS) lastInput(t *testing.T) sts.AssumeRoleWithWebIdentityInput {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.inputs) == 0 {
		t.Fatal("STS was not called")
	}
	return f.inputs[len(f.inputs)-1]
}

const (
	testRole  = "arn:aws:iam::123456789012:role/checkout"
	testToken = "eyJhbGciOiJSUzI1NiJ9.secret-token-payload.signature"
)

var (
	testKey = cache.Key{Namespace: "shop", ServiceAccount: "checkout", RoleARN: testRole,
		Audience: "sts.amazonaws.com", TokenExpiration: time.Hour}
	testPod = cache.PodRef{Namespace: "shop", Name: "checkout-7d9f", UID: "uid-1"}
	expires = t0.Add(time.Hour)
)

func stsAnswer(assumedARN string) *sts.AssumeRoleWithWebIdentityOutput {
	out := &sts.AssumeRoleWithWebIdentityOutput{Credentials: &types.Credentials{
		AccessKeyId:     aws.String("ASIAEXAMPLE"),
		SecretAccessKey: aws.String("secret-key"),
		SessionToken:    aws.String("session-token"),
		Expiration:      aws.Time(expires),
	}}
	if assumedARN != "" {
		out.AssumedRoleUser = &types.AssumedRoleUser{Arn: aws.String(assumedARN), AssumedRoleId: aws.String("AROA:x")}
	}
	return out
}

var validSessionName = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func TestExchangeWithTokenManager(t *testing.T) {
	f := newTokenFixture()
	client := &fakeSTS{out: stsAnswer("")}
	ex, err := NewExchanger(f.m, client, ExchangerOptions{Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	key := testKey
	key.Audience, key.TokenExpiration = "", 0 // left to the defaults
	if _, err := ex.Fetch(context.Background(), key, testPod); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	in := client.lastInput(t)
	req, _, _ := f.api.lastRequest()

	t.Run("the web identity token is the one the TokenManager got", func(t *testing.T) {
		if got := aws.ToString(in.WebIdentityToken); got != "token-1" {
			t.Errorf("WebIdentityToken = %q, want token-1", got)
		}
	})
	t.Run("the token is bound to the pod", func(t *testing.T) {
		if ref := req.Spec.BoundObjectRef; ref.Name != testPod.Name || ref.UID != testPod.UID {
			t.Errorf("boundObjectRef = %+v, want pod %s/%s", ref, testPod.Name, testPod.UID)
		}
	})
	t.Run("an unset audience and expiration take the defaults", func(t *testing.T) {
		if got := req.Spec.Audiences; len(got) != 1 || got[0] != DefaultAudience {
			t.Errorf("audiences = %v, want [%s]", got, DefaultAudience)
		}
		if got := *req.Spec.ExpirationSeconds; got != int64(DefaultTokenExpiration/time.Second) {
			t.Errorf("expirationSeconds = %d", got)
		}
	})
}

func TestExchangeInput(t *testing.T) {
	tests := []struct {
		name         string
		duration     time.Duration
		wantDuration int32
	}{
		{"the default session lasts an hour", 0, 3600},
		{"a configured session duration is sent", 2 * time.Hour, 7200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := &fakeSTS{out: stsAnswer("")}
			ex, err := NewExchanger(&fakeTokens{token: testToken}, client, ExchangerOptions{SessionDuration: tt.duration})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ex.Fetch(context.Background(), testKey, testPod); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			in := client.lastInput(t)
			if got := aws.ToString(in.RoleArn); got != testRole {
				t.Errorf("RoleArn = %q, want %q", got, testRole)
			}
			name := aws.ToString(in.RoleSessionName)
			if name != "podcreds@shop.checkout" || !validSessionName.MatchString(name) {
				t.Errorf("RoleSessionName = %q, want podcreds@shop.checkout", name)
			}
			if got := aws.ToInt32(in.DurationSeconds); got != tt.wantDuration {
				t.Errorf("DurationSeconds = %d, want %d", got, tt.wantDuration)
			}
			if got := aws.ToString(in.WebIdentityToken); got != testToken {
				t.Errorf("WebIdentityToken = %q, want the token source's", got)
			}
		})
	}
}

func TestExchangeOutput(t *testing.T) {
	tests := []struct {
		name        string
		assumedARN  string
		roleARN     string
		wantAccount string
	}{
		{"the account comes from the assumed-role ARN", "arn:aws:sts::210987654321:assumed-role/checkout/podcreds@shop.checkout", testRole, "210987654321"},
		{"without an assumed-role ARN the account comes from the role ARN", "", testRole, "123456789012"},
		{"a MinIO ARN yields no account", "", "arn:minio:iam:::role/dummy-internal", ""},
		{"a malformed account is ignored", "arn:aws:sts::12345:assumed-role/x/y", "arn:aws:iam::notanumber1:role/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(t0.Add(time.Second))
			ex, err := NewExchanger(&fakeTokens{token: testToken}, &fakeSTS{out: stsAnswer(tt.assumedARN)}, ExchangerOptions{Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			key := testKey
			key.RoleARN = tt.roleARN
			c, err := ex.Fetch(context.Background(), key, testPod)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if c.AccessKeyID != "ASIAEXAMPLE" || c.SecretAccessKey != "secret-key" || c.SessionToken != "session-token" {
				t.Errorf("credentials = %q/%q/%q", c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
			}
			if !c.Expiration.Equal(expires) || !c.Issued.Equal(clk.Now()) {
				t.Errorf("issued %v, expires %v; want %v, %v", c.Issued, c.Expiration, clk.Now(), expires)
			}
			if c.AccountID != tt.wantAccount {
				t.Errorf("AccountID = %q, want %q", c.AccountID, tt.wantAccount)
			}
			if len(c.ContainerBody()) == 0 {
				t.Error("the response bodies were not rendered")
			}
		})
	}
}

func TestExchangeIncompleteAnswer(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*sts.AssumeRoleWithWebIdentityOutput) *sts.AssumeRoleWithWebIdentityOutput
	}{
		{"no output at all", func(*sts.AssumeRoleWithWebIdentityOutput) *sts.AssumeRoleWithWebIdentityOutput { return nil }},
		{"no credentials", func(o *sts.AssumeRoleWithWebIdentityOutput) *sts.AssumeRoleWithWebIdentityOutput {
			o.Credentials = nil
			return o
		}},
		{"no access key", func(o *sts.AssumeRoleWithWebIdentityOutput) *sts.AssumeRoleWithWebIdentityOutput {
			o.Credentials.AccessKeyId = nil
			return o
		}},
		{"no secret key", func(o *sts.AssumeRoleWithWebIdentityOutput) *sts.AssumeRoleWithWebIdentityOutput {
			o.Credentials.SecretAccessKey = aws.String("")
			return o
		}},
		{"no session token", func(o *sts.AssumeRoleWithWebIdentityOutput) *sts.AssumeRoleWithWebIdentityOutput {
			o.Credentials.SessionToken = nil
			return o
		}},
		{"no expiration", func(o *sts.AssumeRoleWithWebIdentityOutput) *sts.AssumeRoleWithWebIdentityOutput {
			o.Credentials.Expiration = nil
			return o
		}},
	}
	for _, tt := range tests {
		t.Run("an answer with "+tt.name+" is a retriable internal error", func(t *testing.T) {
			met := newMetrics()
			ex, err := NewExchanger(&fakeTokens{token: testToken}, &fakeSTS{out: tt.mutate(stsAnswer(""))}, ExchangerOptions{Metrics: met})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ex.Fetch(context.Background(), testKey, testPod)
			fe := asFailure(t, err)
			if !fe.Retriable() || fe.Code != "InternalError" {
				t.Errorf("error = %v (status %d), want a retriable InternalError", fe, fe.Status)
			}
			if got := testutil.ToFloat64(met.STSRequests.WithLabelValues(metrics.ResultRetriable)); got != 1 {
				t.Errorf("retriable STSRequests = %v, want 1", got)
			}
		})
	}
}

func TestExchangerOptions(t *testing.T) {
	tests := []struct {
		name     string
		duration time.Duration
		ok       bool
	}{
		{"fifteen minutes is the shortest session accepted", 15 * time.Minute, true},
		{"twelve hours is the longest session accepted", 12 * time.Hour, true},
		{"a session under fifteen minutes is refused", 899 * time.Second, false},
		{"a session over twelve hours is refused", 43201 * time.Second, false},
		{"a session of fractional seconds is refused", time.Hour + time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewExchanger(&fakeTokens{}, &fakeSTS{}, ExchangerOptions{SessionDuration: tt.duration})
			if (err == nil) != tt.ok {
				t.Errorf("NewExchanger(%v) error = %v, want ok=%v", tt.duration, err, tt.ok)
			}
		})
	}
}

func TestExchangeWithoutCallingSTS(t *testing.T) {
	t.Run("a token failure is returned as it is and STS is not called", func(t *testing.T) {
		want := failure.Final(404, "PodNotFound", "pod shop/checkout-7d9f no longer exists", nil)
		client := &fakeSTS{}
		ex, _ := NewExchanger(&fakeTokens{err: want}, client, ExchangerOptions{})
		if _, err := ex.Fetch(context.Background(), testKey, testPod); err != want {
			t.Errorf("error = %v, want %v", err, want)
		}
		if n := client.calls.Load(); n != 0 {
			t.Errorf("STS calls = %d, want 0", n)
		}
	})
	t.Run("a key without a role is a final error and asks for no token", func(t *testing.T) {
		tokens := &fakeTokens{token: testToken}
		ex, _ := NewExchanger(tokens, &fakeSTS{}, ExchangerOptions{})
		key := testKey
		key.RoleARN = ""
		_, err := ex.Fetch(context.Background(), key, testPod)
		if fe := asFailure(t, err); fe.Retriable() {
			t.Errorf("error = %v, want a final one", fe)
		}
		if len(tokens.specs) != 0 {
			t.Errorf("asked for %d tokens, want 0", len(tokens.specs))
		}
	})
}

// A role whose MaxSessionDuration is below --credential-duration still gets
// credentials: one hour, asked again at once, then for a day without the
// refused attempt; after the day the configured duration is tried again.
func TestExchangeFallsBackToOneHourForACappedRole(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	client := &fakeSTS{out: stsAnswer(""), maxSession: 3600}
	m := metrics.New(nil)
	ex, err := NewExchanger(&fakeTokens{token: testToken}, client, ExchangerOptions{SessionDuration: 4 * time.Hour, Clock: clk, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() {
		t.Helper()
		if _, err := ex.Fetch(context.Background(), testKey, testPod); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
	}
	fetch()
	fetch()
	other := testKey
	other.RoleARN = "arn:aws:iam::123456789012:role/long-sessions"
	client.mu.Lock()
	client.maxSession = 0 // this role allows 4 h
	client.mu.Unlock()
	if _, err := ex.Fetch(context.Background(), other, testPod); err != nil {
		t.Fatal(err)
	}
	clk.SetTime(t0.Add(cappedFor + time.Second))
	fetch()
	want := []int32{14400, 3600, 3600, 14400, 14400}
	if got := client.durations(); !slices.Equal(got, want) {
		t.Fatalf("DurationSeconds asked = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(m.STSRequests.WithLabelValues(metrics.ResultFinal)); got != 1 {
		t.Errorf("final STS results counted = %v, want the one refusal", got)
	}
	if got := testutil.ToFloat64(m.STSRequests.WithLabelValues(metrics.ResultSuccess)); got != 4 {
		t.Errorf("successful STS results counted = %v, want 4", got)
	}

	// A configured duration of an hour or less is never retried.
	client = &fakeSTS{out: stsAnswer(""), maxSession: 900}
	ex, _ = NewExchanger(&fakeTokens{token: testToken}, client, ExchangerOptions{SessionDuration: time.Hour})
	var fe *failure.Error
	if _, err := ex.Fetch(context.Background(), testKey, testPod); !errors.As(err, &fe) || fe.Retriable() || client.calls.Load() != 1 {
		t.Fatalf("Fetch = %v after %d calls; want one final refusal", err, client.calls.Load())
	}
}
