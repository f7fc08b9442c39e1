package tokenreq

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/metrics"
)

var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// fakeAPI is a fake API server's TokenRequest endpoint: it answers with
// tokens "token-1", "token-2", … or with err, and records every request.
type fakeAPI struct {
	client *fake.Clientset
	clock  *clocktesting.FakePassiveClock
	calls  atomic.Int32

	mu      sync.Mutex
	err     error // answered instead of a token when set
	granted int64 // when > 0, the lifetime granted instead of the one asked for
	last    *authenticationv1.TokenRequest
	lastNS  string
	lastSA  string
}

func newFakeAPI(clk *clocktesting.FakePassiveClock) *fakeAPI {
	f := &fakeAPI{client: fake.NewClientset(), clock: clk}
	f.client.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "token" {
			return false, nil, nil
		}
		create := action.(k8stesting.CreateActionImpl)
		req := create.GetObject().(*authenticationv1.TokenRequest)
		n := f.calls.Add(1)

		f.mu.Lock()
		defer f.mu.Unlock()
		f.last, f.lastNS, f.lastSA = req.DeepCopy(), create.GetNamespace(), create.Name
		if f.err != nil {
			return true, nil, f.err
		}
		resp := req.DeepCopy()
		if f.granted > 0 {
			resp.Spec.ExpirationSeconds = &f.granted
		}
		resp.Status.Token = fmt.Sprintf("token-%d", n)
		resp.Status.ExpirationTimestamp = metav1.NewTime(
			f.clock.Now().Add(time.Duration(*resp.Spec.ExpirationSeconds) * time.Second))
		return true, resp, nil
	})
	return f
}

func (f *fakeAPI) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeAPI) lastRequest() (*authenticationv1.TokenRequest, string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.lastNS, f.lastSA
}

func testSpec(podName string, uid types.UID, expiration time.Duration) TokenSpec {
	return TokenSpec{
		Namespace:      "shop",
		ServiceAccount: "checkout",
		Audience:       "sts.amazonaws.com",
		Expiration:     expiration,
		Pod:            cache.PodRef{Namespace: "shop", Name: podName, UID: uid},
	}
}

var podSpec = testSpec("checkout-7d9f", "uid-1", time.Hour)

type tokenFixture struct {
	clock   *clocktesting.FakePassiveClock
	api     *fakeAPI
	m       *TokenManager
	metrics *metrics.Metrics
	logs    *observer.ObservedLogs
}

func newTokenFixture() *tokenFixture {
	clk := clocktesting.NewFakePassiveClock(t0)
	api := newFakeAPI(clk)
	core, logs := observer.New(zapcore.DebugLevel)
	met := newMetrics()
	m := NewTokenManager(kubeclientset.Wrap(api.client), TokenOptions{Clock: clk, Logger: zap.New(core), Metrics: met})
	return &tokenFixture{clock: clk, api: api, m: m, metrics: met, logs: logs}
}

func (f *tokenFixture) step(d time.Duration) { f.clock.SetTime(f.clock.Now().Add(d)) }

func mustToken(t *testing.T, m *TokenManager, spec TokenSpec) string {
	t.Helper()
	tok, err := m.Token(context.Background(), spec)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func TestTokenRefresh(t *testing.T) {
	tests := []struct {
		name       string
		expiration time.Duration
		granted    int64         // lifetime the API server grants, 0 for as asked
		reuseAt    time.Duration // still the first token here
		refreshAt  time.Duration // a second token here
	}{
		{"a one-hour token is reused until 80 % of its lifetime has passed", time.Hour, 0,
			48*time.Minute - maxJitter - time.Second, 48*time.Minute + time.Second},
		{"a ten-minute token is refreshed after eight minutes", 10 * time.Minute, 0,
			8*time.Minute - maxJitter - time.Second, 8*time.Minute + time.Second},
		{"a two-day token is refreshed when it is a day old", 48 * time.Hour, 0,
			24*time.Hour - maxJitter - time.Second, 24*time.Hour + time.Second},
		{"a token the API server shortened is refreshed by its granted lifetime", 24 * time.Hour, 600,
			8*time.Minute - maxJitter - time.Second, 8*time.Minute + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTokenFixture()
			f.api.granted = tt.granted
			spec := testSpec("p", "uid-p", tt.expiration)

			if got := mustToken(t, f.m, spec); got != "token-1" {
				t.Fatalf("first token = %q, want token-1", got)
			}
			f.step(tt.reuseAt)
			if got := mustToken(t, f.m, spec); got != "token-1" {
				t.Fatalf("token at %v = %q, want the cached token-1", tt.reuseAt, got)
			}
			if n := f.api.calls.Load(); n != 1 {
				t.Fatalf("API calls before refresh = %d, want 1", n)
			}
			f.step(tt.refreshAt - tt.reuseAt)
			if got := mustToken(t, f.m, spec); got != "token-2" {
				t.Fatalf("token at %v = %q, want a fresh token-2", tt.refreshAt, got)
			}
			if n := f.api.calls.Load(); n != 2 {
				t.Fatalf("API calls after refresh = %d, want 2", n)
			}
		})
	}
}

func TestTokenRequestContent(t *testing.T) {
	f := newTokenFixture()
	mustToken(t, f.m, podSpec)
	req, ns, sa := f.api.lastRequest()

	checks := []struct {
		name      string
		got, want any
	}{
		{"namespace", ns, "shop"},
		{"ServiceAccount", sa, "checkout"},
		{"audiences", fmt.Sprint(req.Spec.Audiences), "[sts.amazonaws.com]"},
		{"expirationSeconds", *req.Spec.ExpirationSeconds, int64(3600)},
		{"boundObjectRef kind", req.Spec.BoundObjectRef.Kind, "Pod"},
		{"boundObjectRef apiVersion", req.Spec.BoundObjectRef.APIVersion, "v1"},
		{"boundObjectRef name", req.Spec.BoundObjectRef.Name, "checkout-7d9f"},
		{"boundObjectRef uid", req.Spec.BoundObjectRef.UID, types.UID("uid-1")},
	}
	for _, c := range checks {
		t.Run("the request carries the "+c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
			}
		})
	}
	t.Run("the request is counted and timed", func(t *testing.T) {
		if got := testutil.ToFloat64(f.metrics.TokenRequests.WithLabelValues(metrics.ResultSuccess)); got != 1 {
			t.Errorf("successful TokenRequests = %v, want 1", got)
		}
		if got := observations(t, f.metrics.TokenDuration); got != 1 {
			t.Errorf("TokenDuration observations = %d, want 1", got)
		}
	})
}

func TestTokenSpecValidation(t *testing.T) {
	tests := []struct {
		name       string
		mutate     func(*TokenSpec)
		wantStatus int // 0 for an unclassified (programming) error
	}{
		{"an expiration under ten minutes is refused as final", func(s *TokenSpec) { s.Expiration = 599 * time.Second }, 400},
		{"a missing pod UID is refused", func(s *TokenSpec) { s.Pod.UID = "" }, 0},
		{"a missing pod name is refused", func(s *TokenSpec) { s.Pod.Name = "" }, 0},
		{"a missing audience is refused", func(s *TokenSpec) { s.Audience = "" }, 0},
		{"a pod in another namespace is refused", func(s *TokenSpec) { s.Pod.Namespace = "other" }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTokenFixture()
			spec := podSpec
			tt.mutate(&spec)
			_, err := f.m.Token(context.Background(), spec)
			if err == nil {
				t.Fatal("got no error")
			}
			if tt.wantStatus != 0 {
				if fe := asFailure(t, err); fe.Status != tt.wantStatus {
					t.Errorf("status = %d, want %d", fe.Status, tt.wantStatus)
				}
			}
			if n := f.api.calls.Load(); n != 0 {
				t.Errorf("API calls = %d, want none for an invalid spec", n)
			}
		})
	}
	t.Run("an expiration of exactly ten minutes is accepted", func(t *testing.T) {
		f := newTokenFixture()
		spec := podSpec
		spec.Expiration = MinTokenExpiration
		mustToken(t, f.m, spec)
	})
}

// len returns how many tokens m holds.
func (m *TokenManager) len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.tokens)
}
