// Package monitoring tests deploy/monitoring: the alert rules under promtool,
// and that the rules and the Grafana dashboard use only metrics the agent
// exports.
package monitoring

import (
	"fmt"
	"strings"
)

// keywords are PromQL words that look like metric names but are operators,
// aggregations or modifiers. A metric named like one of them could not be
// written unquoted anyway.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "bool": true, "offset": true, "inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "atan2": true,
}

// labelLists are the keywords followed by a parenthesised list of label
// names, which are not metrics.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// metricNames returns the metric names a PromQL expression selects. It is a
// small lexer rather than Prometheus' parser (which would pull Prometheus'
// whole module into ours): it skips strings, label matchers, range and
// subquery brackets, Grafana variables, numbers and durations, function
// names (an identifier followed by "("), keywords and the label lists of
// by/without/on/ignoring/group_*. Whatever identifier is left is a metric.
func metricNames(expr string) ([]string, error) {
	var names []string
	s := expr
	i := 0
	skipString := func() error {
		q := s[i]
		for i++; i < len(s); i++ {
			switch {
			case s[i] == '\\' && q != '`':
				i++
			case s[i] == q:
				i++
				return nil
			}
		}
		return fmt.Errorf("unterminated string in %q", expr)
	}
	skipTo := func(closing byte) error {
		for i < len(s) {
			switch c := s[i]; {
			case c == '"' || c == '\'' || c == '`':
				if err := skipString(); err != nil {
					return err
				}
			case c == closing:
				i++
				return nil
			default:
				i++
			}
		}
		return fmt.Errorf("missing %q in %q", closing, expr)
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return nil, err
			}
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			i++
			if err := skipTo('}'); err != nil {
				return nil, err
			}
		case c == '[':
			i++
			if err := skipTo(']'); err != nil {
				return nil, err
			}
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				if err := skipTo('}'); err != nil {
					return nil, err
				}
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			next := strings.TrimLeft(s[i:], " \t\n")
			switch {
			case labelLists[strings.ToLower(word)] && strings.HasPrefix(next, "("):
				i = len(s) - len(next) + 1
				if err := skipTo(')'); err != nil {
					return nil, err
				}
			case keywords[strings.ToLower(word)], strings.HasPrefix(next, "("):
				// An operator, or a function applied to what follows.
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, nil
}
