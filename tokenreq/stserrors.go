package tokenreq

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/smithy-go"

	"github.com/podcreds/podcreds/failure"
)

// throttleRetryAfter is the Retry-After sent when STS throttles us: a little
// longer than the default second, so clients do not come straight back into
// the throttle.
const throttleRetryAfter = 2 * time.Second

// stsClass is what an STS error code means for the caller.
type stsClass struct {
	status int    // 503 for retriable ones
	code   string // our failure code
	fix    string // for final ones: what usually fixes it
}

var (
	throttled   = stsClass{http.StatusServiceUnavailable, "Throttled", ""}
	unavailable = stsClass{http.StatusServiceUnavailable, "UpstreamUnavailable", ""}
	denied      = stsClass{http.StatusForbidden, "AccessDenied",
		"the role's trust policy must allow sts:AssumeRoleWithWebIdentity to this cluster's OIDC provider for sub system:serviceaccount:<namespace>:<serviceaccount>"}
	badToken = stsClass{http.StatusForbidden, "InvalidIdentityToken",
		"the account must have this cluster's ServiceAccount issuer as an IAM OIDC provider whose client ID is the token's audience (eks.amazonaws.com/audience or --sts-token-audience)"}
	expired  = stsClass{http.StatusForbidden, "ExpiredToken", "the token had expired when STS checked it: check the node's clock"}
	disabled = stsClass{http.StatusForbidden, "RegionDisabled", "activate STS in this region for the account (IAM account settings), or set --sts-region"}
	invalid  = stsClass{http.StatusBadRequest, "InvalidRequest",
		"check the role ARN, and --credential-duration against the role's MaxSessionDuration"}
)

// stsCodes classifies the error codes STS (and STS-compatible servers such as
// MinIO) are known to answer AssumeRoleWithWebIdentity with.
var stsCodes = map[string]stsClass{
	"Throttling":                  throttled,
	"ThrottlingException":         throttled,
	"RequestLimitExceeded":        throttled,
	"TooManyRequestsException":    throttled,
	"RequestThrottled":            throttled,
	"RequestThrottledException":   throttled,
	"SlowDown":                    throttled,
	"IDPCommunicationError":       unavailable,
	"ServiceUnavailable":          unavailable,
	"ServiceUnavailableException": unavailable,
	"InternalFailure":             unavailable,
	"InternalError":               unavailable,
	"RequestTimeout":              unavailable,
	"RequestTimeoutException":     unavailable,

	"AccessDenied":                       denied,
	"AccessDeniedException":              denied,
	"InvalidIdentityToken":               badToken,
	"IDPRejectedClaim":                   badToken,
	"ExpiredTokenException":              expired,
	"ExpiredToken":                       expired,
	"RegionDisabledException":            disabled,
	"MalformedPolicyDocument":            invalid,
	"PackedPolicyTooLarge":               invalid,
	"ValidationError":                    invalid,
	"InvalidParameterValue":              invalid,
	"MissingParameter":                   invalid,
	"JWTPayloadSizeExceededException":    invalid,
	"SessionDurationEscalationException": invalid,
}

// classifySTSError turns an AssumeRoleWithWebIdentity error into a
// *failure.Error. Throttling, STS or identity-provider trouble, 5xx answers,
// network errors and timeouts are retriable; STS refusing this role, token or
// request is final (403, or 400 when the request itself is wrong). Anything
// unrecognised is retriable: giving up on a pod for good needs a clear answer.
//
// Messages name the role and the ServiceAccount (who) and carry STS's own
// message for final errors; token is hidden from them and from err's text.
func classifySTSError(err error, token, roleARN, who string) *failure.Error {
	subject := "role " + roleARN + " for " + who
	err = redact(err, token)

	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		class, known := stsCodes[apiErr.ErrorCode()]
		if !known {
			class = classifyUnknown(err, apiErr.ErrorFault())
		}
		if class.status < 500 {
			detail := apiErr.ErrorCode()
			if m := apiErr.ErrorMessage(); m != "" {
				detail += ": " + m
			}
			if token != "" {
				detail = strings.ReplaceAll(detail, token, redacted)
			}
			return failure.Final(class.status, class.code, "STS refused "+subject+": "+detail+hint(class), err)
		}
		return retriable(class, subject, err)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return failure.Retriable(unavailable.code, "STS timed out assuming "+subject, 0, err)
	case isInvalidParams(err):
		return failure.Final(invalid.status, invalid.code, "invalid STS request for "+subject+hint(invalid), err)
	}
	return retriable(classifyUnknown(err, smithy.FaultUnknown), subject, err)
}

// classifyUnknown classifies an error whose code we do not know by its HTTP
// status, else by which side STS blamed, else as retriable.
func classifyUnknown(err error, fault smithy.ErrorFault) stsClass {
	var resp interface{ HTTPStatusCode() int }
	if errors.As(err, &resp) {
		switch s := resp.HTTPStatusCode(); {
		case s == http.StatusTooManyRequests:
			return throttled
		case s == http.StatusRequestTimeout || s >= 500:
			return unavailable
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			return denied
		case s >= 400:
			return invalid
		}
	}
	if fault == smithy.FaultClient {
		return invalid
	}
	return unavailable
}

func retriable(class stsClass, subject string, err error) *failure.Error {
	if class == throttled {
		return failure.Retriable(class.code, "STS is throttling requests (assuming "+subject+")", throttleRetryAfter, err)
	}
	return failure.Retriable(class.code, "STS is unavailable (assuming "+subject+")", 0, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isInvalidParams(err error) bool {
	var ip *smithy.InvalidParamsError
	return errors.As(err, &ip)
}

// tokenRejected reports whether STS refused the web identity token itself,
// in which case a cached copy of it is worth nothing.
func tokenRejected(err *failure.Error) bool {
	return err != nil && (err.Code == badToken.code || err.Code == expired.code)
}

// redacted replaces a secret in error text.
const redacted = "[REDACTED]"

// redactedError hides a secret in an error's text while keeping the chain
// intact for errors.Is and errors.As.
type redactedError struct {
	err    error
	secret string
}

func (r *redactedError) Error() string {
	return strings.ReplaceAll(r.err.Error(), r.secret, redacted)
}

func (r *redactedError) Unwrap() error { return r.err }

// redact returns err with every occurrence of secret hidden from its text.
// Nothing in the SDK's errors is known to echo the token, but an
// STS-compatible server could put it in a message, and messages are logged
// and sent to clients.
func redact(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	return &redactedError{err: err, secret: secret}
}

// hint is a final class's fix as the end of a message.
func hint(c stsClass) string {
	if c.fix == "" {
		return ""
	}
	return " (" + c.fix + ")"
}
