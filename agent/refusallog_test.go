package agent

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

// TestRefusalsAreLoggedAtInfoOncePerAddressAndCode: an operator's default
// (info) logs show each kind of refusal of each caller, and a caller retrying
// a refusal in a loop does not flood them.
func TestRefusalsAreLoggedAtInfoOncePerAddressAndCode(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	stats := newEndpointStats(metrics.New(prometheus.NewRegistry()), "container")
	now := time.Unix(1_700_000_000, 0)
	stats.refusals.now = func() time.Time { return now }

	noRole := failure.Final(http.StatusNotFound, "NoRole", "serviceaccount ns/app has no role", nil)
	denied := failure.Final(http.StatusForbidden, "AccessDenied", "STS refused role x", errors.New("AccessDenied: not authorized"))
	down := failure.Retriable("UpstreamUnavailable", "STS is unavailable", 0, nil)
	refuse := func(remote string, err error) {
		r := httptest.NewRequest(http.MethodGet, "http://169.254.170.23/v1/credentials", nil)
		r.RemoteAddr = remote
		writeError(httptest.NewRecorder(), r, logger, stats, now, err)
	}
	count := func(level zapcore.Level) int {
		return logs.FilterLevelExact(level).FilterMessage("request refused").Len()
	}

	for range 50 {
		refuse("10.0.0.1:40000", noRole)
	}
	if n := count(zapcore.InfoLevel); n != 1 {
		t.Fatalf("50 identical refusals: %d info lines, want 1", n)
	}
	if n := count(zapcore.DebugLevel); n != 49 {
		t.Fatalf("the other refusals: %d debug lines, want 49", n)
	}
	refuse("10.0.0.1:40001", denied) // same address, another code
	refuse("10.0.0.2:40000", noRole) // another address, same code
	if n := count(zapcore.InfoLevel); n != 3 {
		t.Fatalf("new (address, code) pairs: %d info lines in all, want 3", n)
	}
	refuse("10.0.0.3:40000", down)
	refuse("10.0.0.3:40000", down)
	if n := count(zapcore.WarnLevel); n != 1 {
		t.Fatalf("a 5xx refusal: %d warn lines, want 1", n)
	}

	now = now.Add(refusalLogInterval)
	refuse("10.0.0.1:40000", noRole)
	info := logs.FilterLevelExact(zapcore.InfoLevel).All()
	if len(info) != 4 {
		t.Fatalf("after the interval: %d info lines, want 4", len(info))
	}
	last := info[3].ContextMap()
	if last["suppressedSinceLastLog"] != int64(49) || last["code"] != "NoRole" || last["status"] != int64(404) ||
		!strings.Contains(last["reason"].(string), "ns/app") || last["remote"] != "10.0.0.1:40000" {
		t.Fatalf("line after the interval: %v", last)
	}
	if e := logs.FilterLevelExact(zapcore.InfoLevel).FilterField(zap.String("code", "AccessDenied")).All(); len(e) != 1 || e[0].ContextMap()["error"] == nil {
		t.Fatalf("the cause is logged with the refusal: %v", e)
	}
}

// TestRefusalLogIsBounded: a scan from thousands of addresses keeps the
// per-pair memory bounded and still logs once the old pairs lapse.
func TestRefusalLogIsBounded(t *testing.T) {
	l := newRefusalLog()
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }
	for i := range maxRefusalKeys + 100 {
		ip, _ := remoteIP("10." + itoa(i>>16&255) + "." + itoa(i>>8&255) + "." + itoa(i&255) + ":1")
		l.admit(ip, "PodNotFound")
	}
	if len(l.seen) != maxRefusalKeys {
		t.Fatalf("%d pairs remembered, want at most %d", len(l.seen), maxRefusalKeys)
	}
	ip, _ := remoteIP("192.168.0.1:1")
	if ok, _ := l.admit(ip, "PodNotFound"); ok {
		t.Fatal("a new pair was logged at info while the memory was full")
	}
	now = now.Add(refusalLogInterval)
	if ok, _ := l.admit(ip, "PodNotFound"); !ok {
		t.Fatal("a new pair was not logged after the old ones lapsed")
	}
	if len(l.seen) != 1 {
		t.Fatalf("%d pairs remembered after the sweep, want 1", len(l.seen))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
