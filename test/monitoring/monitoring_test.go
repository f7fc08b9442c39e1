package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/metrics"
)

const (
	rulesFile      = "../../deploy/monitoring/podcreds.rules.yaml"
	rulesTest      = "../../deploy/monitoring/tests/podcreds.rules.test.yaml"
	promRuleFile   = "../../deploy/monitoring/prometheusrule.yaml"
	chartRulesFile = "../../deploy/helm/podcreds/files/podcreds.rules.yaml"
	dashboardFile  = "../../deploy/monitoring/podcreds-dashboard.json"
)

// fromPrometheus are the series Prometheus itself adds to every target.
var fromPrometheus = map[string]bool{"up": true}

// recorder is a Registerer that keeps every collector registered through
// it, so the test sees metric vectors that have no children yet (a registry's
// Gather leaves them out).
type recorder struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.reg.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedMetrics returns every series name the agent exports, registered
// by the same functions cmd/podcreds and agent/stack call; histograms and
// summaries contribute their _bucket, _sum and _count series.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{reg: prometheus.NewRegistry()}
	metrics.New(rec)
	metrics.RegisterReady(rec, func() bool { return true })
	metrics.RegisterProcess(rec, metrics.Build{Version: "v", Commit: "c", GoVersion: "go"})

	names := map[string]bool{}
	add := func(name string, kind dto.MetricType) {
		names[name] = true
		switch kind {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"] = true
			fallthrough
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	for _, c := range rec.collectors {
		// A vector's type shows in its Go type (it may have no children to
		// gather yet); single metrics always gather, with their type, below.
		kind := dto.MetricType_UNTYPED
		switch c.(type) {
		case *prometheus.HistogramVec:
			kind = dto.MetricType_HISTOGRAM
		case *prometheus.SummaryVec:
			kind = dto.MetricType_SUMMARY
		}
		descs := make(chan *prometheus.Desc, 256)
		go func() { c.Describe(descs); close(descs) }()
		for d := range descs {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the metric name from %s", d)
			}
			add(m[1], kind)
		}
	}
	// Single metrics (and the Go and process collectors' histograms and
	// summaries) get their types from what they collect.
	families, err := rec.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		add(f.GetName(), f.GetType())
	}
	if !names["podcreds_http_requests_total"] || !names["podcreds_sts_request_duration_seconds_bucket"] || !names["process_resident_memory_bytes"] {
		t.Fatalf("the exported metrics lack ones every agent has; the recorder is broken: %v", slices.Sorted(maps(names)))
	}
	return names
}

func maps(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// expression is one PromQL expression and where it is used.
type expression struct{ where, expr string }

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := utilyaml.ToJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func ruleExpressions(t *testing.T) []expression {
	var rg ruleGroups
	readYAML(t, rulesFile, &rg)
	var out []expression
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			out = append(out, expression{"rule " + r.Alert + r.Record, r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", rulesFile)
	}
	return out
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)

func dashboardExpressions(t *testing.T) []expression {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []expression
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Fatalf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, expression{"panel " + p.Title, tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		query, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(query)
		if m == nil {
			t.Fatalf("dashboard variable %s: query %q is not label_values(<selector>, <label>)", v.Name, query)
		}
		out = append(out, expression{"variable " + v.Name, m[1]})
	}
	return out
}

// unknownMetrics lists, per expression, the metrics it uses that are not
// in exported (nor added by Prometheus).
func unknownMetrics(exprs []expression, exported map[string]bool) ([]string, error) {
	var problems []string
	for _, e := range exprs {
		names, err := metricNames(e.expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.where, err)
		}
		if len(names) == 0 {
			problems = append(problems, fmt.Sprintf("%s uses no metric at all: %q", e.where, e.expr))
		}
		for _, n := range names {
			if !exported[n] && !fromPrometheus[n] {
				problems = append(problems, fmt.Sprintf("%s uses %s, which the agent does not export", e.where, n))
			}
		}
	}
	return problems, nil
}

// TestRulesAndDashboardUseExportedMetrics is what keeps alerts from going
// silent when a metric is renamed: every metric an alert or a dashboard panel
// selects must be one the agent registers.
func TestRulesAndDashboardUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	exprs := append(ruleExpressions(t), dashboardExpressions(t)...)
	problems, err := unknownMetrics(exprs, exported)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("deploy/monitoring uses metrics the agent does not export (package metrics names them):\n  %s", strings.Join(problems, "\n  "))
	}

	t.Run("renaming a metric the rules use is caught", func(t *testing.T) {
		renamed := map[string]bool{}
		for n := range exported {
			renamed[strings.Replace(n, "podcreds_sts_throttled_total", "podcreds_sts_throttling_total", 1)] = true
		}
		problems, err := unknownMetrics(ruleExpressions(t), renamed)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "podcreds_sts_throttled_total") }) {
			t.Fatalf("the check missed the renamed podcreds_sts_throttled_total: %q", problems)
		}
	})
	t.Run("renaming a histogram the dashboard uses is caught", func(t *testing.T) {
		renamed := map[string]bool{}
		for n := range exported {
			renamed[strings.Replace(n, "podcreds_http_request_duration_seconds", "podcreds_http_duration_seconds", 1)] = true
		}
		problems, err := unknownMetrics(dashboardExpressions(t), renamed)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, "podcreds_http_request_duration_seconds_bucket") }) {
			t.Fatalf("the check missed the renamed podcreds_http_request_duration_seconds: %q", problems)
		}
	})
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="podcreds"} == 0`, []string{"up"}},
		{`sum without (instance, pod) (rate(a_total{job="x", code=~"5.."}[5m])) / sum by (job) (b_total offset 1h) > 0.25`, []string{"a_total", "b_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{i=~"$instance"}[$__rate_interval])))`, []string{"h_bucket"}},
		{`x{l="}{[("} and on (job) group_left(version) y # z`, []string{"x", "y"}},
		{`count by (version) (info{a='it''s'}) * 1e3 + ${var} - ns:recorded:rate5m`, []string{"info", "ns:recorded:rate5m"}},
		{`topk(3, sum(rate(c[1m:10s])))`, []string{"c"}},
	} {
		got, err := metricNames(tc.expr)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, %v; want %q", tc.expr, got, err, tc.want)
		}
	}
	for _, bad := range []string{`a{b="c}`, `rate(a[5m)`, `a{b="c"`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q) accepted a broken expression", bad)
		}
	}
}

// TestAlertRules runs promtool's syntax check and the rules' unit tests
// (deploy/monitoring/tests): every alert fires on its failure, with its
// annotations, and stays silent on healthy input.
func TestAlertRules(t *testing.T) {
	promtool, err := testenv.Tool("promtool")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTest}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
	var rg ruleGroups
	readYAML(t, rulesFile, &rg)
	var tested struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	raw, _ := os.ReadFile(rulesTest)
	js, err := utilyaml.ToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &tested); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tested.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] || !silent[r.Alert] {
				t.Errorf("alert %s: the unit tests must show it firing (%v) and silent (%v)", r.Alert, fires[r.Alert], silent[r.Alert])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			if anchor := "#" + strings.ToLower(r.Alert); !strings.HasSuffix(r.Annotations["runbook_url"], "docs/monitoring.md"+anchor) {
				t.Errorf("alert %s: runbook_url %q should point at docs/monitoring.md%s", r.Alert, r.Annotations["runbook_url"], anchor)
			}
		}
	}
	doc, err := os.ReadFile("../../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !bytes.Contains(doc, []byte("### "+r.Alert+"\n")) {
				t.Errorf("docs/monitoring.md has no runbook section \"### %s\"", r.Alert)
			}
		}
	}
}

// TestPrometheusRuleCopies keeps the rule file's other forms identical to it:
// the PrometheusRule for the Prometheus Operator, and the chart's copies of
// the rules and the dashboard (Helm can only read files inside the chart).
func TestPrometheusRuleCopies(t *testing.T) {
	want, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	chartCopy, err := os.ReadFile(chartRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chartCopy, want) {
		t.Errorf("%s differs from %s: run make monitoring-sync", chartRulesFile, rulesFile)
	}
	for _, pair := range [][2]string{{dashboardFile, "../../deploy/helm/podcreds/files/podcreds-dashboard.json"}} {
		a, errA := os.ReadFile(pair[0])
		b, errB := os.ReadFile(pair[1])
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (%v, %v): run make monitoring-sync", pair[1], pair[0], errA, errB)
		}
	}
	var rules, pr map[string]any
	readJSONOfYAML(t, rulesFile, &rules)
	readJSONOfYAML(t, promRuleFile, &pr)
	if pr["apiVersion"] != "monitoring.coreos.com/v1" || pr["kind"] != "PrometheusRule" {
		t.Fatalf("%s: %v %v, want a monitoring.coreos.com/v1 PrometheusRule", promRuleFile, pr["apiVersion"], pr["kind"])
	}
	spec, _ := pr["spec"].(map[string]any)
	if !reflect.DeepEqual(spec["groups"], rules["groups"]) {
		t.Fatalf("%s's spec.groups differ from %s's groups: run make monitoring-sync", promRuleFile, rulesFile)
	}
}

func readJSONOfYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := utilyaml.ToJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := json.Unmarshal(js, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
