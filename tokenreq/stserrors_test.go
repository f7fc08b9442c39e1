package tokenreq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

func apiError(code string, fault smithy.ErrorFault) error {
	return &smithy.GenericAPIError{Code: code, Message: "message for " + code, Fault: fault}
}

// sdkError wraps err the way the SDK does: an OperationError around an HTTP
// ResponseError with the given status.
func sdkError(status int, err error) error {
	return &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRoleWithWebIdentity",
		Err: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      err,
		}}
}

func TestSTSErrorClassification(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
		forget     bool // the cached token must be dropped
	}{
		{"Throttling is retriable", apiError("Throttling", smithy.FaultClient), 503, "Throttled", false},
		{"ThrottlingException is retriable", apiError("ThrottlingException", smithy.FaultClient), 503, "Throttled", false},
		{"an identity provider communication error is retriable", apiError("IDPCommunicationError", smithy.FaultClient), 503, "UpstreamUnavailable", false},
		{"ServiceUnavailable is retriable", apiError("ServiceUnavailable", smithy.FaultServer), 503, "UpstreamUnavailable", false},
		{"InternalFailure is retriable", apiError("InternalFailure", smithy.FaultServer), 503, "UpstreamUnavailable", false},
		{"an unknown code with a server fault is retriable", apiError("Mystery", smithy.FaultServer), 503, "UpstreamUnavailable", false},
		{"an unknown code with no fault is retriable", apiError("Mystery", smithy.FaultUnknown), 503, "UpstreamUnavailable", false},
		{"AccessDenied is a final 403", apiError("AccessDenied", smithy.FaultClient), 403, "AccessDenied", false},
		{"InvalidIdentityToken is a final 403 and drops the token", apiError("InvalidIdentityToken", smithy.FaultClient), 403, "InvalidIdentityToken", true},
		{"IDPRejectedClaim is a final 403 and drops the token", apiError("IDPRejectedClaim", smithy.FaultClient), 403, "InvalidIdentityToken", true},
		{"ExpiredTokenException is a final 403 and drops the token", apiError("ExpiredTokenException", smithy.FaultClient), 403, "ExpiredToken", true},
		{"RegionDisabledException is a final 403", apiError("RegionDisabledException", smithy.FaultClient), 403, "RegionDisabled", false},
		{"MalformedPolicyDocument is a final 400", apiError("MalformedPolicyDocument", smithy.FaultClient), 400, "InvalidRequest", false},
		{"PackedPolicyTooLarge is a final 400", apiError("PackedPolicyTooLarge", smithy.FaultClient), 400, "InvalidRequest", false},
		{"ValidationError is a final 400", apiError("ValidationError", smithy.FaultClient), 400, "InvalidRequest", false},
		{"an unknown code with a client fault is a final 400", apiError("Mystery", smithy.FaultClient), 400, "InvalidRequest", false},
		{"a wrapped AccessDenied is still a final 403", sdkError(403, apiError("AccessDenied", smithy.FaultClient)), 403, "AccessDenied", false},
		{"an unknown code answered with 403 is a final 403", sdkError(403, apiError("Mystery", smithy.FaultUnknown)), 403, "AccessDenied", false},
		{"an unknown code answered with 404 is a final 400", sdkError(404, apiError("Mystery", smithy.FaultUnknown)), 400, "InvalidRequest", false},
		{"an unknown code answered with 429 is throttling", sdkError(429, apiError("Mystery", smithy.FaultClient)), 503, "Throttled", false},
		{"an HTTP 500 without an API error is retriable", sdkError(500, errors.New("bad gateway page")), 503, "UpstreamUnavailable", false},
		{"an HTTP 502 with an unknown code is retriable", sdkError(502, apiError("Mystery", smithy.FaultClient)), 503, "UpstreamUnavailable", false},
		{"a refused connection is retriable", &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRoleWithWebIdentity",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, 503, "UpstreamUnavailable", false},
		{"a network timeout is retriable", &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, 503, "UpstreamUnavailable", false},
		{"an expired context is retriable", fmt.Errorf("operation error STS: %w", context.DeadlineExceeded), 503, "UpstreamUnavailable", false},
		{"a cancelled context is retriable", context.Canceled, 503, "UpstreamUnavailable", false},
		{"invalid parameters are a final 400", &smithy.InvalidParamsError{Context: "AssumeRoleWithWebIdentityInput"}, 400, "InvalidRequest", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			met := newMetrics()
			tokens := &fakeTokens{token: testToken}
			ex, err := NewExchanger(tokens, &fakeSTS{err: tt.err}, ExchangerOptions{Metrics: met})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ex.Fetch(context.Background(), testKey, testPod)
			fe := asFailure(t, err)
			if fe.Status != tt.wantStatus || fe.Code != tt.wantCode {
				t.Errorf("got %d %s, want %d %s (%v)", fe.Status, fe.Code, tt.wantStatus, tt.wantCode, err)
			}
			if fe.Retriable() && fe.RetryAfter <= 0 {
				t.Errorf("a retriable error has no Retry-After")
			}
			if fe.Code == "Throttled" && fe.RetryAfter != throttleRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", fe.RetryAfter, throttleRetryAfter)
			}
			for _, want := range []string{testRole, "shop/checkout"} {
				if !strings.Contains(fe.Message, want) {
					t.Errorf("message %q does not name %q", fe.Message, want)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error does not wrap the STS error")
			}
			if got := len(tokens.forgotten) > 0; got != tt.forget {
				t.Errorf("token forgotten = %v, want %v", got, tt.forget)
			}
			result := metrics.ResultOf(err, failure.IsRetriable)
			if got := testutil.ToFloat64(met.STSRequests.WithLabelValues(result)); got != 1 {
				t.Errorf("STSRequests{result=%q} = %v, want 1", result, got)
			}
			if got := observations(t, met.STSDuration); got != 1 {
				t.Errorf("STSDuration observations = %d, want 1", got)
			}
			assertNoSecret(t, err)
		})
	}
}

func TestSTSErrorsHideTheToken(t *testing.T) {
	echo := fmt.Sprintf("token %s is not valid", testToken)
	tests := []struct {
		name string
		err  error
	}{
		{"a final error whose message echoes the token", &smithy.GenericAPIError{Code: "InvalidIdentityToken", Message: echo, Fault: smithy.FaultClient}},
		{"a retriable error whose message echoes the token", &smithy.GenericAPIError{Code: "Throttling", Message: echo}},
		{"a transport error that echoes the token", fmt.Errorf("post failed: %s", echo)},
	}
	for _, tt := range tests {
		t.Run(tt.name+" does not leak it", func(t *testing.T) {
			ex, _ := NewExchanger(&fakeTokens{token: testToken}, &fakeSTS{err: tt.err}, ExchangerOptions{})
			_, err := ex.Fetch(context.Background(), testKey, testPod)
			assertNoSecret(t, err)
			if !strings.Contains(err.Error(), redacted) {
				t.Errorf("error %q does not show where the token was hidden", err)
			}
			var apiErr smithy.APIError
			if errors.As(tt.err, &apiErr) && !errors.As(err, &apiErr) {
				t.Error("redaction broke errors.As")
			}
		})
	}
}
