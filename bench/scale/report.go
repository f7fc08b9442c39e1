package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/podcreds/podcreds/bench/loadgen"
)

// The statistics and report module of the scale benchmarks: quantiles,
// metric readings, number formats, tables, checks and the results file.
// Latency histograms of load runs are bench/loadgen's.

// table is one block of figures, printed aligned on the terminal and as a
// Markdown table in the results file.
type table struct {
	Title  string
	Header []string
	Rows   [][]string
	// Notes are printed under the table: how to read it, and caveats.
	Notes []string
}

// check is one line of the final summary: a figure and what it is held to.
type check struct {
	Scenario, Figure, Measured, Goal string
	// Verdict is PASS, FAIL, MEETS, MISSES, DISTURBED (the machine stalled
	// the run: its timing figures are suspect) or "" for a figure with no
	// goal.
	Verdict string
}

// writeText prints t with the first column left-aligned and the others
// right-aligned.
func (t table) writeText(w io.Writer) {
	widths := make([]int, len(t.Header))
	for _, r := range append([][]string{t.Header}, t.Rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n== %s ==\n", t.Title)
	for _, r := range append([][]string{t.Header}, t.Rows...) {
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			switch {
			case i == 0:
				b.WriteString(c + pad)
			default:
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteByte('\n')
	}
	for _, n := range t.Notes {
		b.WriteString("  " + n + "\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// writeMarkdown writes t as a Markdown section.
func (t table) writeMarkdown(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## %s\n\n", t.Title)
	row := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteByte('\n')
	}
	row(t.Header)
	b.WriteString("|")
	for i := range t.Header {
		if i == 0 {
			b.WriteString("---|")
		} else {
			b.WriteString("--:|")
		}
	}
	b.WriteByte('\n')
	for _, r := range t.Rows {
		row(r)
	}
	if len(t.Notes) > 0 {
		b.WriteByte('\n')
		for _, n := range t.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	_, _ = io.WriteString(w, b.String())
}

// summaryTable turns the checks into the final table.
func summaryTable(checks []check) table {
	t := table{Title: "Summary", Header: []string{"scenario", "figure", "measured", "goal", "verdict"}}
	for _, c := range checks {
		t.Rows = append(t.Rows, []string{c.Scenario, c.Figure, c.Measured, c.Goal, c.Verdict})
	}
	return t
}

// failed reports whether any check is a hard failure (FAIL). A missed
// measurement goal (MISSES) is reported, not failed.
func failed(checks []check) bool {
	for _, c := range checks {
		if c.Verdict == "FAIL" {
			return true
		}
	}
	return false
}

// writeResults writes the results file: when and where it ran, every table,
// the summary and the plot.
func writeResults(w io.Writer, started time.Time, took time.Duration, tables []table, checks []check, plot string) {
	fmt.Fprintf(w, "# podcreds scale benchmarks\n\n")
	fmt.Fprintf(w, "Run %s, took %s; %s/%s, %d CPUs (GOMAXPROCS %d), %s. Produced by `go run ./bench/scale`.\n",
		started.UTC().Format(time.RFC3339), took.Round(time.Second), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	for _, t := range tables {
		t.writeMarkdown(w)
	}
	summaryTable(checks).writeMarkdown(w)
	if plot != "" {
		fmt.Fprintf(w, "\n![figures](%s)\n", plot)
	}
}

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
