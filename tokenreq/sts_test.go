package tokenreq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

const stsSuccessXML = `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>secret-key</SecretAccessKey>
      <SessionToken>session-token</SessionToken>
      <Expiration>2026-01-02T11:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/checkout/podcreds@shop.checkout</Arn>
      <AssumedRoleId>AROAEXAMPLE:podcreds@shop.checkout</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`

const stsErrorXML = `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error>
  <RequestId>req-2</RequestId>
</ErrorResponse>`

// fakeSTSServer is an STS endpoint over HTTP that records what it was sent.
type fakeSTSServer struct {
	*httptest.Server
	calls atomic.Int32

	mu      sync.Mutex
	auth    string
	token   string // X-Amz-Security-Token
	form    map[string]string
	status  int
	body    string
	blockOn bool // hold requests until the client gives up
}

func newFakeSTSServer(t *testing.T, status int, body string) *fakeSTSServer {
	s := &fakeSTSServer{status: status, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		_ = r.ParseForm()
		s.mu.Lock()
		s.auth = r.Header.Get("Authorization")
		s.token = r.Header.Get("X-Amz-Security-Token")
		s.form = map[string]string{}
		for k := range r.PostForm {
			s.form[k] = r.PostForm.Get(k)
		}
		block, status, body := s.blockOn, s.status, s.body
		s.mu.Unlock()
		if block {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	client := s.Client()
	t.Cleanup(func() {
		client.CloseIdleConnections()
		s.Close()
	})
	return s
}

func callSTS(s *fakeSTSServer, region string, timeout time.Duration) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return NewSTSClient(region, s.URL, s.Client()).AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(testRole),
		RoleSessionName:  aws.String("podcreds@shop.checkout"),
		WebIdentityToken: aws.String(testToken),
		DurationSeconds:  aws.Int32(3600),
	})
}

func TestNewSTSClient(t *testing.T) {
	t.Run("it sends an unsigned request to the endpoint override", func(t *testing.T) {
		for _, region := range []string{"eu-west-1", "us-east-1", ""} {
			s := newFakeSTSServer(t, 200, stsSuccessXML)
			out, err := callSTS(s, region, 5*time.Second)
			if err != nil {
				t.Fatalf("region %s: %v", region, err)
			}
			if s.auth != "" {
				t.Errorf("request carries Authorization %q, want none", s.auth)
			}
			want := map[string]string{"Action": "AssumeRoleWithWebIdentity", "RoleArn": testRole,
				"RoleSessionName": "podcreds@shop.checkout", "WebIdentityToken": testToken, "DurationSeconds": "3600"}
			for k, v := range want {
				if s.form[k] != v {
					t.Errorf("form %s = %q, want %q", k, s.form[k], v)
				}
			}
			if aws.ToString(out.Credentials.AccessKeyId) != "ASIAEXAMPLE" ||
				!aws.ToTime(out.Credentials.Expiration).Equal(time.Date(2026, 1, 2, 11, 0, 0, 0, time.UTC)) {
				t.Errorf("credentials not parsed: %+v", out.Credentials)
			}
		}
	})

	tests := []struct {
		name       string
		status     int
		body       string
		wantStatus int
		wantCode   string
	}{
		{"a 500 is tried once and is retriable", 500, fmt.Sprintf(stsErrorXML, "Receiver", "InternalFailure", "oops"), 503, "UpstreamUnavailable"},
		{"a 503 without an error body is tried once and is retriable", 503, "<html>busy</html>", 503, "UpstreamUnavailable"},
		{"throttling is tried once and is retriable", 400, fmt.Sprintf(stsErrorXML, "Sender", "Throttling", "Rate exceeded"), 503, "Throttled"},
		{"an IdP communication error is tried once and is retriable", 400, fmt.Sprintf(stsErrorXML, "Sender", "IDPCommunicationError", "no"), 503, "UpstreamUnavailable"},
		{"AccessDenied is final", 403, fmt.Sprintf(stsErrorXML, "Sender", "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"), 403, "AccessDenied"},
		{"an invalid identity token is final", 400, fmt.Sprintf(stsErrorXML, "Sender", "InvalidIdentityToken", "Incorrect token audience"), 403, "InvalidIdentityToken"},
		{"a validation error is final", 400, fmt.Sprintf(stsErrorXML, "Sender", "ValidationError", "DurationSeconds exceeds the MaxSessionDuration"), 400, "InvalidRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeSTSServer(t, tt.status, tt.body)
			_, err := callSTS(s, "eu-west-1", 5*time.Second)
			if n := s.calls.Load(); n != 1 {
				t.Errorf("attempts = %d, want 1 (the cache does the retrying)", n)
			}
			fe := classifySTSError(err, testToken, testRole, "ServiceAccount shop/checkout")
			if fe.Status != tt.wantStatus || fe.Code != tt.wantCode {
				t.Errorf("got %d %s, want %d %s (%v)", fe.Status, fe.Code, tt.wantStatus, tt.wantCode, err)
			}
			assertNoSecret(t, fe)
		})
	}

	t.Run("a request that times out is retriable", func(t *testing.T) {
		s := newFakeSTSServer(t, 200, stsSuccessXML)
		s.blockOn = true
		_, err := callSTS(s, "eu-west-1", 100*time.Millisecond)
		fe := classifySTSError(err, testToken, testRole, "ServiceAccount shop/checkout")
		if !fe.Retriable() || fe.Code != "UpstreamUnavailable" {
			t.Errorf("got %d %s, want a retriable UpstreamUnavailable (%v)", fe.Status, fe.Code, err)
		}
	})
	t.Run("without an override it calls the regional endpoint", func(t *testing.T) {
		var got string
		record := httpClientFunc(func(r *http.Request) (*http.Response, error) {
			got = r.URL.Scheme + "://" + r.URL.Host
			return nil, errors.New("not sending")
		})
		_, err := NewSTSClient("eu-west-1", "", record).AssumeRoleWithWebIdentity(context.Background(),
			&sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(testRole),
				RoleSessionName: aws.String("s"), WebIdentityToken: aws.String(testToken)})
		if err == nil {
			t.Fatal("expected the recording client's error")
		}
		if want := "https://sts.eu-west-1.amazonaws.com"; got != want {
			t.Errorf("endpoint = %q, want %q", got, want)
		}
	})
}

// httpClientFunc adapts a function to sts.HTTPClient.
type httpClientFunc func(*http.Request) (*http.Response, error)

func (f httpClientFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }
