package monitoring

import (
	"regexp"
	"testing"
)

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// FuzzMetricNames: whatever the expression, the lexer ends, and what it
// calls a metric is a well-formed metric name.
func FuzzMetricNames(f *testing.F) {
	for _, seed := range []string{
		`up{job="podcreds"} == 0`,
		`sum without (instance) (rate(a_total{code=~"5.."}[5m])) / on(job) group_left(v) b`,
		`histogram_quantile(0.99, sum by (le) (rate(h_bucket{i=~"$instance"}[$__rate_interval])))`,
		`x{l="}{[("} # comment`, `'unterminated`, `${a}b 1e3 .5`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		names, err := metricNames(expr)
		if err != nil {
			return
		}
		for _, n := range names {
			if !metricName.MatchString(n) || keywords[n] {
				t.Fatalf("metricNames(%q) returned %q, not a metric name", expr, n)
			}
		}
	})
}
