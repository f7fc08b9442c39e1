package agent

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/metrics"
)

// Shared, never-modified header values: assigning them skips the allocations
// of Header.Set on the hot path.
var (
	jsonContentType = []string{"application/json"}
	textContentType = []string{"text/plain; charset=utf-8"}
	noStore         = []string{"no-store"}
	closeConn       = []string{"close"}
)

// endpointStats holds one endpoint's pre-resolved metric children, so a
// request does no label lookups, and which of its refusals to log.
type endpointStats struct {
	name     string
	ok       prometheus.Counter
	duration prometheus.Observer
	codes    *prometheus.CounterVec
	refusals *refusalLog
}

func newEndpointStats(m *metrics.Metrics, name string) *endpointStats {
	return &endpointStats{
		name:     name,
		ok:       m.HTTPRequests.WithLabelValues(name, "200"),
		duration: m.HTTPDuration.WithLabelValues(name),
		codes:    m.HTTPRequests,
		refusals: newRefusalLog(),
	}
}

func (s *endpointStats) done(code int, start time.Time) {
	if code == http.StatusOK {
		s.ok.Inc()
	} else {
		s.codes.WithLabelValues(s.name, strconv.Itoa(code)).Inc()
	}
	s.duration.Observe(time.Since(start).Seconds())
}

// writeError is the one place an error becomes a response, a log line and a
// metric. The body and the log carry the failure's safe message only. Every
// refusal closes the connection: a client that is refused has no use for
// it, and one that is flooding (429) must not keep its slot.
func writeError(w http.ResponseWriter, r *http.Request, logger *zap.Logger, stats *endpointStats, start time.Time, err error) {
	fe := failure.From(err)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	h["Connection"] = closeConn
	if fe.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(fe.RetryAfter.Seconds()))))
	}
	w.WriteHeader(fe.Status)
	_, _ = w.Write(fe.Body())
	stats.done(fe.Status, start)

	// Every refusal is visible in default logs: the first of each source
	// address and code per minute at info (warn when the agent or what it
	// depends on is at fault), the rest at debug and counted in the next
	// line. The reason is the message the client got; the cause may name
	// more (an API server's answer), never a token or a credential.
	level := zap.InfoLevel
	if fe.Status >= 500 {
		level = zap.WarnLevel
	}
	if !logger.Core().Enabled(level) {
		return // an agent logging less (--log-level=warn) pays nothing here
	}
	ip, _ := remoteIP(r.RemoteAddr)
	admitted, suppressed := stats.refusals.admit(ip, fe.Code)
	if !admitted {
		level = zap.DebugLevel
	}
	if ce := logger.Check(level, "request refused"); ce != nil {
		fields := []zap.Field{
			zap.String("endpoint", stats.name), zap.String("remote", r.RemoteAddr),
			zap.Int("status", fe.Status), zap.String("code", fe.Code), zap.String("reason", fe.Message),
		}
		if suppressed > 0 {
			fields = append(fields, zap.Int("suppressedSinceLastLog", suppressed))
		}
		if fe.Err != nil {
			fields = append(fields, zap.Error(fe.Err))
		}
		ce.Write(fields...)
	}
}
