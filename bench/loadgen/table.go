package loadgen

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// FormatTable writes one line per series: target, connection mode, rounds,
// median req/s, median p50 and p99, total errors, and the median req/s
// relative to the series named baseline (the first series when baseline is
// empty). Names are left-aligned and numbers right-aligned.
func FormatTable(w io.Writer, baseline string, series []Series) error {
	var base Summary
	found := false
	for _, s := range series {
		if baseline == "" || s.Name == baseline {
			base, found = s.Summary(), true
			break
		}
	}
	if !found && len(series) > 0 {
		return fmt.Errorf("loadgen: baseline %q is not among the series", baseline)
	}

	// The server's CPU per response is a column only where it was sampled.
	withCPU := false
	for _, s := range series {
		withCPU = withCPU || s.Summary().CPUPerResponse > 0
	}
	header := []string{"target", "mode", "rounds", "req/s", "p50", "p99", "errors", "vs base"}
	if withCPU {
		header = append(header, "cpu/resp", "cpu vs base")
	}
	rows := [][]string{header}
	for _, s := range series {
		sum := s.Summary()
		r := Compare(sum, base)
		row := []string{
			s.Name, s.Config.Mode(), fmt.Sprint(sum.Rounds), fmt.Sprintf("%.0f", sum.RPS),
			FormatDuration(sum.P50), FormatDuration(sum.P99), fmt.Sprint(sum.Errors),
			fmt.Sprintf("%.2fx", r.RPS),
		}
		if withCPU {
			row = append(row, FormatDuration(sum.CPUPerResponse), fmt.Sprintf("%.2fx", r.CPU))
		}
		rows = append(rows, row)
	}
	const leftCols = 2 // target and mode
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < leftCols {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatDuration prints d with three or four significant digits in µs, ms
// or s, as the benchmark tables do.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
