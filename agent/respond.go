package agent

import (
	"encoding/json"
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

// errorBody carries the message under both spellings: Go v2 reads
// code/message, JS v3 reads Code/Message.
type errorBody struct {
	LowerCode    string `json:"code"`
	LowerMessage string `json:"message"`
	Code         string `json:"Code"`
	Message      string `json:"Message"`
}

// endpointStats holds one endpoint's pre-resolved metric children, so a
// request does no label lookups.
type endpointStats struct {
	name     string
	ok       prometheus.Counter
	duration prometheus.Observer
	codes    *prometheus.CounterVec
}

func newEndpointStats(m *metrics.Metrics, name string) *endpointStats {
	return &endpointStats{
		name:     name,
		ok:       m.HTTPRequests.WithLabelValues(name, "200"),
		duration: m.HTTPDuration.WithLabelValues(name),
		codes:    m.HTTPRequests,
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
	body, _ := json.Marshal(errorBody{fe.Code, fe.Message, fe.Code, fe.Message})
	w.WriteHeader(fe.Status)
	_, _ = w.Write(body)
	stats.done(fe.Status, start)

	level := zap.DebugLevel // final answers are the caller's business
	if fe.Status >= 500 {
		level = zap.WarnLevel
	}
	if ce := logger.Check(level, "request refused"); ce != nil {
		fields := []zap.Field{
			zap.String("endpoint", stats.name), zap.String("remote", r.RemoteAddr),
			zap.Int("status", fe.Status), zap.String("code", fe.Code), zap.String("reason", fe.Message),
		}
		if fe.Err != nil {
			fields = append(fields, zap.Error(fe.Err))
		}
		ce.Write(fields...)
	}
}
