package failure

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestClassification(t *testing.T) {
	wrapped := errors.Join(errors.New("context"), Final(http.StatusForbidden, "AccessDenied", "no", nil))
	for _, tc := range []struct {
		name      string
		err       error
		retriable bool
		status    int
	}{
		{"no error is not a retriable failure", nil, false, 0},
		{"a 503 is retriable", Retriable("Down", "down", 0, nil), true, 503},
		{"a 4xx is final", Final(http.StatusNotFound, "NoRole", "none", nil), false, 404},
		{"a final error keeps its class when wrapped", wrapped, false, 403},
		{"an unclassified error is a retriable 503", errors.New("boom"), true, 503},
		{"too many requests is not retriable by the cache", TooManyRequests(0), false, 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsRetriable(tc.err); got != tc.retriable {
				t.Fatalf("IsRetriable = %v", got)
			}
			if tc.err != nil && From(tc.err).Status != tc.status {
				t.Fatalf("status %d, want %d", From(tc.err).Status, tc.status)
			}
		})
	}
	if r := Retriable("x", "y", 0, nil); r.RetryAfter != DefaultRetryAfter {
		t.Errorf("default Retry-After %s", r.RetryAfter)
	}
	if r := TooManyRequests(10 * time.Millisecond); r.RetryAfter < time.Second {
		t.Errorf("429 Retry-After %s, want at least a second", r.RetryAfter)
	}
}
