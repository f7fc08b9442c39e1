package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/podcreds/podcreds/bench/loadgen"
)

// quantile returns the nearest-rank q-quantile of ds (the smallest value
// with at least ⌈q·n⌉ values at or below it), or 0 for none. ds is not
// reordered.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// fmtDur prints d as the load generator's tables do.
func fmtDur(d time.Duration) string { return loadgen.FormatDuration(d) }

// fmtMiB prints a byte count in MiB.
func fmtMiB(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// verdict is PASS or FAIL.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// metricSum adds up every series of the metric family name in g whose labels
// include all of want (nil: every series). Counters, gauges and untyped
// values count; a missing family is 0.
func metricSum(g prometheus.Gatherer, name string, want map[string]string) float64 {
	families, err := g.Gather()
	if err != nil {
		return math.NaN()
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelsMatch(m.GetLabel(), want) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(have []*dto.LabelPair, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range have {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// textMetric reads an unlabelled sample from Prometheus text exposition
// (the real agent's /metrics): the value on the line "name value".
func textMetric(exposition, name string) (float64, bool) {
	for line := range strings.Lines(exposition) {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[0] == name {
			var v float64
			if _, err := fmt.Sscanf(fields[1], "%g", &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}
