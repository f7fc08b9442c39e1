package tokenreq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

var errInternal = apierrors.NewInternalError(errors.New("etcd is sad"))

func TestTokenRefreshFailure(t *testing.T) {
	t.Run("a failed refresh falls back to the still-valid cached token", func(t *testing.T) {
		f := newTokenFixture()
		mustToken(t, f.m, podSpec)
		f.step(50 * time.Minute)
		f.api.fail(errInternal)
		if got := mustToken(t, f.m, podSpec); got != "token-1" {
			t.Fatalf("token = %q, want the cached token-1", got)
		}
		if n := f.api.calls.Load(); n != 2 {
			t.Errorf("API calls = %d, want 2 (the refresh was attempted)", n)
		}
		logged := f.logs.FilterMessage("token refresh failed, using the cached token").All()
		if len(logged) != 1 {
			t.Fatalf("logged %d fallback warnings, want 1", len(logged))
		}
		for _, e := range f.logs.All() {
			if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "token-1") {
				t.Errorf("a log line contains the token: %v %v", e.Message, e.ContextMap())
			}
		}
		t.Run("and a later refresh that works replaces it", func(t *testing.T) {
			f.api.fail(nil)
			if got := mustToken(t, f.m, podSpec); got != "token-3" {
				t.Errorf("token = %q, want token-3", got)
			}
		})
	})

	t.Run("a failed refresh with only an expired token left is a retriable error", func(t *testing.T) {
		f := newTokenFixture()
		mustToken(t, f.m, podSpec)
		f.step(time.Hour + time.Second)
		f.api.fail(errInternal)
		_, err := f.m.Token(context.Background(), podSpec)
		fe := asFailure(t, err)
		if !fe.Retriable() || fe.Code != "UpstreamUnavailable" {
			t.Errorf("error = %v (status %d), want a retriable UpstreamUnavailable", fe, fe.Status)
		}
		if strings.Contains(err.Error(), "token-1") {
			t.Errorf("error %q contains the token", err)
		}
	})

	t.Run("a final answer drops the cached token instead of falling back", func(t *testing.T) {
		f := newTokenFixture()
		mustToken(t, f.m, podSpec)
		f.step(50 * time.Minute)
		f.api.fail(apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "checkout-7d9f"))
		_, err := f.m.Token(context.Background(), podSpec)
		if fe := asFailure(t, err); fe.Status != 404 || fe.Code != "PodNotFound" {
			t.Errorf("error = %v (status %d), want a final 404 PodNotFound", fe, fe.Status)
		}
		if n := f.m.len(); n != 0 {
			t.Errorf("cached tokens = %d, want 0", n)
		}
	})
}

func TestDropPodAndForget(t *testing.T) {
	other := testSpec("checkout-a1b2", "uid-2", time.Hour)

	t.Run("DropPod drops only the tokens of the deleted pod", func(t *testing.T) {
		f := newTokenFixture()
		mustToken(t, f.m, podSpec) // token-1
		mustToken(t, f.m, other)   // token-2
		f.m.DropPod(podSpec.Pod.UID)
		if got := mustToken(t, f.m, other); got != "token-2" {
			t.Errorf("other pod's token = %q, want the cached token-2", got)
		}
		if got := mustToken(t, f.m, podSpec); got != "token-3" {
			t.Errorf("dropped pod's token = %q, want a new token-3", got)
		}
	})

	t.Run("Forget drops one token so the next call asks again", func(t *testing.T) {
		f := newTokenFixture()
		mustToken(t, f.m, podSpec)
		f.m.Forget(podSpec)
		if got := mustToken(t, f.m, podSpec); got != "token-2" {
			t.Errorf("token = %q, want a new token-2", got)
		}
	})

	t.Run("expired tokens are swept on a later call", func(t *testing.T) {
		f := newTokenFixture()
		mustToken(t, f.m, podSpec)
		mustToken(t, f.m, other)
		f.step(2 * time.Hour)
		mustToken(t, f.m, testSpec("third", "uid-3", time.Hour))
		if n := f.m.len(); n != 1 {
			t.Errorf("cached tokens = %d, want only the new one", n)
		}
	})
}

func TestTokenErrorClassification(t *testing.T) {
	gr := func(resource string) schema.GroupResource { return schema.GroupResource{Resource: resource} }
	tests := []struct {
		name        string
		err         error
		wantStatus  int
		wantCode    string
		wantRetry   time.Duration // only checked when non-zero
		wantMessage string
	}{
		{"a missing ServiceAccount is a final 404", apierrors.NewNotFound(gr("serviceaccounts"), "checkout"),
			404, "ServiceAccountNotFound", 0, "ServiceAccount shop/checkout"},
		{"a missing pod is a final 404", apierrors.NewNotFound(gr("pods"), "checkout-7d9f"),
			404, "PodNotFound", 0, "pod shop/checkout-7d9f"},
		{"a pod whose UID changed is a final 404", apierrors.NewConflict(gr("Pod"), "checkout-7d9f", errors.New("uid mismatch")),
			404, "PodNotFound", 0, "pod shop/checkout-7d9f"},
		{"a forbidden request is a final 403", apierrors.NewForbidden(gr("serviceaccounts"), "checkout", errors.New("no RBAC")),
			403, "TokenRequestForbidden", 0, "ServiceAccount shop/checkout"},
		{"an invalid request is a final 403", apierrors.NewInvalid(schema.GroupKind{Kind: "TokenRequest"}, "", field.ErrorList{field.Required(field.NewPath("spec"), "x")}),
			403, "TokenRequestRejected", 0, "ServiceAccount shop/checkout"},
		{"a pod running as another ServiceAccount is a final 403", apierrors.NewBadRequest("cannot bind token for serviceaccount"),
			403, "TokenRequestRejected", 0, "ServiceAccount shop/checkout"},
		{"throttling is retriable and keeps the server's Retry-After", apierrors.NewTooManyRequests("slow down", 7),
			503, "Throttled", 7 * time.Second, "ServiceAccount shop/checkout"},
		{"an internal server error is retriable", errInternal,
			503, "UpstreamUnavailable", 0, "ServiceAccount shop/checkout"},
		{"an unavailable server is retriable", apierrors.NewServiceUnavailable("down"),
			503, "UpstreamUnavailable", 0, "ServiceAccount shop/checkout"},
		{"a server timeout is retriable", apierrors.NewServerTimeout(gr("serviceaccounts"), "create", 2),
			503, "UpstreamUnavailable", 2 * time.Second, "timed out"},
		{"a client timeout is retriable", &url.Error{Op: "Post", URL: "https://api", Err: context.DeadlineExceeded},
			503, "UpstreamUnavailable", 0, "timed out"},
		{"a refused connection is retriable", &url.Error{Op: "Post", URL: "https://api",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
			503, "UpstreamUnavailable", 0, "ServiceAccount shop/checkout"},
		{"podcreds' own credentials being refused is retriable", apierrors.NewUnauthorized("expired"),
			503, "UpstreamUnavailable", 0, "ServiceAccount shop/checkout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTokenFixture()
			f.api.fail(tt.err)
			_, err := f.m.Token(context.Background(), podSpec)
			fe := asFailure(t, err)
			if fe.Status != tt.wantStatus || fe.Code != tt.wantCode {
				t.Errorf("got %d %s, want %d %s (%v)", fe.Status, fe.Code, tt.wantStatus, tt.wantCode, err)
			}
			if tt.wantRetry != 0 && fe.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", fe.RetryAfter, tt.wantRetry)
			}
			if !strings.Contains(fe.Message, tt.wantMessage) {
				t.Errorf("message %q does not mention %q", fe.Message, tt.wantMessage)
			}
			// Only answers about the bound pod itself let the cache retry
			// as another pod; a missing ServiceAccount is everyone's.
			if gone, want := errors.Is(err, cache.ErrPodGone), tt.wantCode == "PodNotFound"; gone != want {
				t.Errorf("errors.Is(err, cache.ErrPodGone) = %v, want %v", gone, want)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error does not wrap the API error")
			}
			result := metrics.ResultOf(err, failure.IsRetriable)
			if got := testutil.ToFloat64(f.metrics.TokenRequests.WithLabelValues(result)); got != 1 {
				t.Errorf("TokenRequests{result=%q} = %v, want 1", result, got)
			}
		})
	}
}

func TestTokenManagerConcurrency(t *testing.T) {
	f := newTokenFixture()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := testSpec(fmt.Sprint("pod-", i%4), types.UID(fmt.Sprint("uid-", i%4)), time.Hour)
			for range 50 {
				if _, err := f.m.Token(context.Background(), spec); err != nil {
					t.Errorf("Token: %v", err)
					return
				}
				f.m.DropPod(spec.Pod.UID)
			}
		}()
	}
	wg.Wait()
}
