package tokenreq

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newMetrics returns a fresh set of metrics on a private registry.
func newMetrics() *metrics.Metrics {
	return metrics.New(prometheus.NewRegistry())
}

// observations returns how many samples a histogram has taken.
func observations(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatalf("reading histogram: %v", err)
	}
	return m.GetHistogram().GetSampleCount()
}

// asFailure returns err as a *failure.Error, failing the test if it is not
// one.
func asFailure(t *testing.T, err error) *failure.Error {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	fe, ok := err.(*failure.Error)
	if !ok {
		t.Fatalf("error %v (%T) is not a *failure.Error", err, err)
	}
	return fe
}

// fakeTokens is a hand-written TokenSource.
type fakeTokens struct {
	token string
	err   error

	mu        sync.Mutex
	specs     []TokenSpec
	forgotten []TokenSpec
}

func (f *fakeTokens) Token(_ context.Context, spec TokenSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, spec)
	return f.token, f.err
}

func (f *fakeTokens) Forget(spec TokenSpec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgotten = append(f.forgotten, spec)
}

// assertNoSecret fails if err's text or message contains the token or any
// part of the credentials.
func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	fe := failure.From(err)
	for _, text := range []string{err.Error(), fe.Message, fmt.Sprintf("%+v", err)} {
		for _, secret := range []string{testToken, "secret-token-payload", "secret-key", "session-token"} {
			if strings.Contains(text, secret) {
				t.Errorf("error text %q contains a secret (%q)", text, secret)
			}
		}
	}
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}
