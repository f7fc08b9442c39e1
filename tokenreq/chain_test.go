package tokenreq

import (
	"context"
	"net/http"
	"strings"
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
	"github.com/podcreds/podcreds/metrics"
)

const testTarget = "arn:aws:iam::210987654321:role/data-reader"

// chainSTS is a hand-written STS for both hops: it records every input and
// answers each hop with its own scripted error, or with credentials that
// name the hop and a serial number.
type chainSTS struct {
	webCalls, roleCalls atomic.Int32

	mu        sync.Mutex
	webInputs []sts.AssumeRoleWithWebIdentityInput
	roleIns   []sts.AssumeRoleInput
	signers   []aws.Credentials // what signed each AssumeRole
	webErr    error
	roleErr   error
	expires   time.Time
}

func (c *chainSTS) AssumeRoleWithWebIdentity(_ context.Context, in *sts.AssumeRoleWithWebIdentityInput, _ ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	n := c.webCalls.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.webInputs = append(c.webInputs, *in)
	if c.webErr != nil {
		return nil, c.webErr
	}
	return &sts.AssumeRoleWithWebIdentityOutput{Credentials: creds("web", n, c.expires)}, nil
}

func (c *chainSTS) AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	n := c.roleCalls.Add(1)
	var o sts.Options
	for _, fn := range optFns {
		fn(&o)
	}
	var signer aws.Credentials
	if o.Credentials != nil {
		signer, _ = o.Credentials.Retrieve(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roleIns = append(c.roleIns, *in)
	c.signers = append(c.signers, signer)
	if c.roleErr != nil {
		return nil, c.roleErr
	}
	return &sts.AssumeRoleOutput{Credentials: creds("target", n, c.expires)}, nil
}

func creds(hop string, n int32, exp time.Time) *types.Credentials {
	id := strings.ToUpper(hop) + string(rune('0'+n))
	return &types.Credentials{AccessKeyId: aws.String("ASIA" + id), SecretAccessKey: aws.String("secret-" + id),
		SessionToken: aws.String("session-" + id), Expiration: aws.Time(exp)}
}

func (c *chainSTS) set(webErr, roleErr error) {
	c.mu.Lock()
	c.webErr, c.roleErr = webErr, roleErr
	c.mu.Unlock()
}

func chainKey() cache.Key {
	k := testKey
	k.TargetRoleARN = testTarget
	return k
}

func newChain(t *testing.T, s *chainSTS, opts ExchangerOptions) (*Exchanger, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	s.expires = t0.Add(time.Hour)
	opts.Clock, opts.Chain = clk, s
	ex, err := NewExchanger(&fakeTokens{token: testToken}, s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return ex, clk
}

func TestSecondHopInput(t *testing.T) {
	s := &chainSTS{}
	ex, _ := newChain(t, s, ExchangerOptions{ClusterName: "prod-eu", SessionDuration: 4 * time.Hour})
	key := chainKey()
	key.ExternalID = "tenant-42"
	key.SessionName = "kafka-client"
	got, err := ex.Fetch(context.Background(), key, testPod)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if got.AccessKeyID != "ASIATARGET1" {
		t.Errorf("served %s, want the second hop's credentials", got.AccessKeyID)
	}
	in := s.roleIns[0]
	t.Run("the target role, external id and chosen session name are sent", func(t *testing.T) {
		if aws.ToString(in.RoleArn) != testTarget || aws.ToString(in.ExternalId) != "tenant-42" ||
			aws.ToString(in.RoleSessionName) != "kafka-client" {
			t.Errorf("AssumeRole input = %s / %s / %s", aws.ToString(in.RoleArn), aws.ToString(in.ExternalId), aws.ToString(in.RoleSessionName))
		}
		if aws.ToString(s.webInputs[0].RoleSessionName) != "kafka-client" {
			t.Errorf("first hop session name = %s, want the chosen one", aws.ToString(s.webInputs[0].RoleSessionName))
		}
	})
	t.Run("a chained session asks at most one hour", func(t *testing.T) {
		if d := aws.ToInt32(in.DurationSeconds); d != 3600 {
			t.Errorf("DurationSeconds = %d, want 3600 (configured 4h)", d)
		}
		if d := aws.ToInt32(s.webInputs[0].DurationSeconds); d != 4*3600 {
			t.Errorf("first hop DurationSeconds = %d, want the configured 14400", d)
		}
	})
	t.Run("the session tags are namespace, ServiceAccount and cluster, all transitive", func(t *testing.T) {
		tags := map[string]string{}
		for _, tg := range in.Tags {
			tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		want := map[string]string{TagNamespace: "shop", TagServiceAccount: "checkout", TagCluster: "prod-eu"}
		if len(tags) != len(want) {
			t.Errorf("tags = %v, want %v", tags, want)
		}
		for k, v := range want {
			if tags[k] != v {
				t.Errorf("tag %s = %q, want %q", k, tags[k], v)
			}
		}
		if len(in.TransitiveTagKeys) != 3 {
			t.Errorf("TransitiveTagKeys = %v, want all three", in.TransitiveTagKeys)
		}
	})
	t.Run("the second hop is signed with the first hop's credentials", func(t *testing.T) {
		sg := s.signers[0]
		if sg.AccessKeyID != "ASIAWEB1" || sg.SecretAccessKey != "secret-WEB1" || sg.SessionToken != "session-WEB1" {
			t.Errorf("AssumeRole signed by %+v, want the first hop's credentials", sg.AccessKeyID)
		}
	})
	t.Run("no cluster name, no cluster tag", func(t *testing.T) {
		s := &chainSTS{}
		ex, _ := newChain(t, s, ExchangerOptions{})
		if _, err := ex.Fetch(context.Background(), chainKey(), testPod); err != nil {
			t.Fatal(err)
		}
		if n := len(s.roleIns[0].Tags); n != 2 {
			t.Errorf("%d tags, want 2", n)
		}
		if s.roleIns[0].ExternalId != nil {
			t.Error("ExternalId sent though the key has none")
		}
		if got := aws.ToString(s.roleIns[0].RoleSessionName); got != "podcreds@shop.checkout" {
			t.Errorf("RoleSessionName = %q, want the default", got)
		}
	})
}

func TestFirstHopIsCachedApartFromTheSecond(t *testing.T) {
	denied := &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform sts:TagSession", Fault: smithy.FaultClient}
	s := &chainSTS{}
	m := newMetrics()
	ex, clk := newChain(t, s, ExchangerOptions{Metrics: m})
	ctx := context.Background()

	s.set(nil, denied)
	_, err := ex.Fetch(ctx, chainKey(), testPod)
	fe := asFailure(t, err)
	t.Run("a refused second hop is final, names the target role, and is its own code", func(t *testing.T) {
		if fe.Retriable() || fe.Status != http.StatusForbidden || fe.Code != "TargetRoleDenied" || !strings.Contains(fe.Message, testTarget) {
			t.Errorf("got %d %s %q", fe.Status, fe.Code, fe.Message)
		}
		assertNoSecret(t, err)
		if strings.Contains(fe.Error(), "session-WEB1") {
			t.Error("the first hop's session token is in the error")
		}
	})
	t.Run("retrying after a refused second hop costs no first-hop call", func(t *testing.T) {
		s.set(nil, nil)
		if _, err := ex.Fetch(ctx, chainKey(), testPod); err != nil {
			t.Fatal(err)
		}
		if w, r := s.webCalls.Load(), s.roleCalls.Load(); w != 1 || r != 2 {
			t.Errorf("calls: %d first hop, %d second hop; want 1 and 2", w, r)
		}
	})
	t.Run("another target role of the same ServiceAccount shares the first hop", func(t *testing.T) {
		k := chainKey()
		k.TargetRoleARN = "arn:aws:iam::210987654321:role/other"
		if _, err := ex.Fetch(ctx, k, testPod); err != nil {
			t.Fatal(err)
		}
		if w := s.webCalls.Load(); w != 1 {
			t.Errorf("%d first-hop calls, want 1", w)
		}
	})
	t.Run("a first hop close to expiry is renewed", func(t *testing.T) {
		clk.Step(56 * time.Minute) // 4 min left < firstHopMargin
		s.mu.Lock()
		s.expires = clk.Now().Add(time.Hour)
		s.mu.Unlock()
		if _, err := ex.Fetch(ctx, chainKey(), testPod); err != nil {
			t.Fatal(err)
		}
		if w := s.webCalls.Load(); w != 2 {
			t.Errorf("%d first-hop calls, want 2", w)
		}
	})
	t.Run("the first hop's final error fails the fetch without a second hop", func(t *testing.T) {
		ex, _ := newChain(t, s, ExchangerOptions{})
		s.set(&smithy.GenericAPIError{Code: "InvalidIdentityToken", Message: "bad", Fault: smithy.FaultClient}, nil)
		before := s.roleCalls.Load()
		_, err := ex.Fetch(ctx, chainKey(), testPod)
		if fe := asFailure(t, err); fe.Retriable() || fe.Code != "InvalidIdentityToken" {
			t.Errorf("got %s", fe.Code)
		}
		if s.roleCalls.Load() != before {
			t.Error("a second hop was made without a first")
		}
		s.set(nil, nil)
	})
	t.Run("an expired first hop is dropped and renewed once", func(t *testing.T) {
		s := &chainSTS{}
		ex, _ := newChain(t, s, ExchangerOptions{})
		if _, err := ex.Fetch(ctx, chainKey(), testPod); err != nil {
			t.Fatal(err)
		}
		s.set(nil, &smithy.GenericAPIError{Code: "ExpiredToken", Message: "The security token included in the request is expired", Fault: smithy.FaultClient})
		_, _ = ex.Fetch(ctx, chainKey(), testPod)
		if w, r := s.webCalls.Load(), s.roleCalls.Load(); w != 2 || r != 3 {
			t.Errorf("calls: %d first hop, %d second hop; want 2 and 3", w, r)
		}
	})
	t.Run("metrics count each hop apart", func(t *testing.T) {
		if got := testutil.ToFloat64(m.STSChainRequests.WithLabelValues(metrics.ResultFinal)); got != 1 {
			t.Errorf("second-hop final = %v, want 1", got)
		}
		if got := testutil.ToFloat64(m.STSChainRequests.WithLabelValues(metrics.ResultSuccess)); got != 3 {
			t.Errorf("second-hop success = %v, want 3", got)
		}
		if got := testutil.ToFloat64(m.STSRequests.WithLabelValues(metrics.ResultSuccess)); got != 2 {
			t.Errorf("first-hop success = %v, want 2", got)
		}
	})
}

func TestConcurrentTargetsShareOneFirstHop(t *testing.T) {
	s := &chainSTS{}
	ex, _ := newChain(t, s, ExchangerOptions{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := chainKey()
			k.TargetRoleARN = testTarget + string(rune('a'+i%4))
			if _, err := ex.Fetch(context.Background(), k, testPod); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// The first hop is cached once fetched, and concurrent misses share it,
	// so however the goroutines interleave there is exactly one.
	if w := s.webCalls.Load(); w != 1 {
		t.Errorf("%d first-hop calls for 20 fetches of 4 target roles, want 1", w)
	}
}

func TestChainingWithoutAChainClientIsRefused(t *testing.T) {
	s := &chainSTS{}
	ex, err := NewExchanger(&fakeTokens{token: testToken}, s, ExchangerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ex.Fetch(context.Background(), chainKey(), testPod)
	if fe := asFailure(t, err); fe.Retriable() || fe.Code != "ChainingDisabled" {
		t.Errorf("got %s", fe.Code)
	}
}

const assumeRoleXML = `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIATARGET</AccessKeyId>
      <SecretAccessKey>target-secret</SecretAccessKey>
      <SessionToken>target-session</SessionToken>
      <Expiration>2026-01-02T11:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::210987654321:assumed-role/data-reader/podcreds@shop.checkout</Arn>
      <AssumedRoleId>AROATARGET:podcreds@shop.checkout</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>req-3</RequestId></ResponseMetadata>
</AssumeRoleResponse>`

// TestSecondHopOnTheWire sends the second hop through the real SDK client
// that the agent builds (anonymous by default) and checks what reaches STS:
// signed with the first hop's credentials, with the tags in the form.
func TestSecondHopOnTheWire(t *testing.T) {
	srv := newFakeSTSServer(t, 200, assumeRoleXML)
	first := &cache.Credentials{AccessKeyID: "ASIAFIRST", SecretAccessKey: "first-secret", SessionToken: "first-session"}
	ex, err := NewExchanger(&fakeTokens{token: testToken}, &fakeSTS{}, ExchangerOptions{
		Chain: NewSTSClient("eu-west-1", srv.URL, srv.Client()), ClusterName: "prod-eu"})
	if err != nil {
		t.Fatal(err)
	}
	key := chainKey()
	key.ExternalID = "tenant-42"
	got, fe := ex.assumeTarget(context.Background(), key, first, "ServiceAccount shop/checkout")
	if fe != nil {
		t.Fatalf("assumeTarget: %v", fe)
	}
	if got.AccessKeyID != "ASIATARGET" || got.AccountID != "210987654321" {
		t.Errorf("credentials %s of account %s", got.AccessKeyID, got.AccountID)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if !strings.Contains(srv.auth, "Credential=ASIAFIRST/") || srv.token != "first-session" {
		t.Errorf("AssumeRole was not signed with the first hop: Authorization %q, token %q", srv.auth, srv.token)
	}
	want := map[string]string{
		"Action": "AssumeRole", "RoleArn": testTarget, "ExternalId": "tenant-42", "DurationSeconds": "3600",
		"RoleSessionName":   "podcreds@shop.checkout",
		"Tags.member.1.Key": TagNamespace, "Tags.member.1.Value": "shop",
		"Tags.member.2.Key": TagServiceAccount, "Tags.member.2.Value": "checkout",
		"Tags.member.3.Key": TagCluster, "Tags.member.3.Value": "prod-eu",
		"TransitiveTagKeys.member.1": TagNamespace, "TransitiveTagKeys.member.2": TagServiceAccount,
		"TransitiveTagKeys.member.3": TagCluster,
	}
	for k, v := range want {
		if srv.form[k] != v {
			t.Errorf("form %s = %q, want %q", k, srv.form[k], v)
		}
	}
}
