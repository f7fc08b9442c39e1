// Package failure is podcreds' error vocabulary: every error that can reach a
// client carries the HTTP status it should produce, a stable machine-readable
// code, a message that is safe to show the caller, and whether retrying later
// can help. One adapter in the agent turns it into a response, a log line and
// a metric; everything below the agent only has to pick the right constructor.
//
// Messages must never contain tokens, keys or session tokens: they are sent to
// clients and logged.
package failure

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is an error with everything the edge needs to answer a client.
type Error struct {
	// Status is the HTTP status code to answer with.
	Status int
	// Code is a short, stable, CamelCase identifier (e.g. "AccessDenied").
	Code string
	// Message is safe to send to the caller and to log.
	Message string
	// RetryAfter, when non-zero, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Err is the underlying cause, for logs and errors.Is/As; it is never
	// sent to the caller.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// body carries the code and message under both spellings: Go v2 reads
// code/message, JS v3 reads Code/Message.
type body struct {
	LowerCode    string `json:"code"`
	LowerMessage string `json:"message"`
	Code         string `json:"Code"`
	Message      string `json:"Message"`
}

// Body is the JSON the caller is answered with: the code and the safe
// message, never the cause.
func (e *Error) Body() []byte {
	b, _ := json.Marshal(body{e.Code, e.Message, e.Code, e.Message})
	return b
}

// Retriable reports whether asking again later can succeed. Retriable errors
// are answered with 5xx so that every SDK (Java v2 retries only 5xx) retries.
func (e *Error) Retriable() bool { return e.Status >= 500 }

// DefaultRetryAfter is the Retry-After sent with retriable errors that do not
// name their own. SDKs retry about once a second, so one second keeps them in
// step with us without inviting a storm.
const DefaultRetryAfter = time.Second

// Retriable returns a 503 error: upstream throttled or down, caller not yet
// known. retryAfter of zero means DefaultRetryAfter.
func Retriable(code, message string, retryAfter time.Duration, err error) *Error {
	if retryAfter <= 0 {
		retryAfter = DefaultRetryAfter
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: code, Message: message, RetryAfter: retryAfter, Err: err}
}

// Final returns a 4xx error that retrying cannot fix (no role, access denied).
// status must be in 400–499.
func Final(status int, code, message string, err error) *Error {
	if status < 400 || status > 499 {
		panic("failure.Final: status must be 4xx")
	}
	return &Error{Status: status, Code: code, Message: message, Err: err}
}

// TooManyRequests returns a 429 asking the caller to slow down for
// retryAfter (rounded up to whole seconds on the wire).
func TooManyRequests(retryAfter time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "TooManyRequests",
		Message: "too many requests from this address (the agent's per-address --rate-limit); retry after Retry-After", RetryAfter: max(retryAfter, time.Second)}
}

// From returns the *Error in err's chain, or a generic retriable internal
// error for anything unclassified (an unknown failure should make the client
// come back, not give up for good). It is a 503 like every other
// InternalError, so one code always has one status.
func From(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return Retriable("InternalError", "internal error in the agent; it is logged at warn level with the cause", 0, err)
}

// IsRetriable reports whether err (classified or not) may succeed later.
// A nil error is not a failure, so it is not retriable either.
func IsRetriable(err error) bool { return err != nil && From(err).Retriable() }

// Forbidden is the answer when the API server refuses podcreds' own request:
// its RBAC role lacks a grant. It is final (retrying cannot add the grant;
// SDKs would retry a 503 forever) and names the verb and resource the role
// needs, so whoever reads it knows what to add.
func Forbidden(verb, resource, what string, err error) *Error {
	return Final(http.StatusForbidden, "AgentForbidden", fmt.Sprintf(
		"the Kubernetes API server forbids podcreds to %s %s (%s): grant %s on %s in the agent's ClusterRole, as deploy/rbac.yaml does",
		verb, resource, what, verb, resource), err)
}
