package main

import (
	"bytes"
	"fmt"
	"image/png"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podcreds/podcreds/bench/loadgen"
)

func TestBinCounts(t *testing.T) {
	tests := []struct {
		name  string
		ts    []float64
		width float64
		n     int
		want  []int
	}{
		{"times land in the bin that starts at or before them", []float64{0, 0.99, 1, 2.5, 2.999}, 1, 3, []int{2, 1, 2}},
		{"times before the origin or past the last bin are left out", []float64{-0.1, 3, 7}, 1, 3, []int{0, 0, 0}},
		{"bins can be wider than a second", []float64{0.5, 1.5, 2.5}, 2, 2, []int{2, 1}},
		{"no bins give no counts", []float64{1}, 1, 0, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := binCounts(tt.ts, tt.width, tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("binCounts = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMaxOverMean(t *testing.T) {
	tests := []struct {
		name   string
		counts []int
		want   float64
	}{
		{"an even spread is 1", []int{5, 5, 5, 5}, 1},
		{"everything in one bin is the number of bins", []int{0, 20, 0, 0}, 4},
		{"one bin twice the others", []int{2, 1, 1, 0}, 2},
		{"no counts are 0", []int{0, 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maxOverMean(tt.counts); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("maxOverMean(%v) = %v, want %v", tt.counts, got, tt.want)
			}
		})
	}
}

func TestUniformMaxOverMean(t *testing.T) {
	t.Run("is repeatable", func(t *testing.T) {
		if a, b := uniformMaxOverMean(500, 20, 50), uniformMaxOverMean(500, 20, 50); a != b {
			t.Errorf("two runs gave %v and %v", a, b)
		}
	})
	t.Run("approaches 1 as bins fill up and grows as they empty", func(t *testing.T) {
		dense, sparse := uniformMaxOverMean(100_000, 10, 20), uniformMaxOverMean(200, 50, 20)
		if dense < 1 || dense > 1.05 {
			t.Errorf("10 000 per bin: %v, want just above 1", dense)
		}
		if sparse <= dense || sparse < 2 {
			t.Errorf("4 per bin: %v, want well above %v", sparse, dense)
		}
	})
	t.Run("nothing to throw is 0", func(t *testing.T) {
		if got := uniformMaxOverMean(0, 10, 10); got != 0 {
			t.Errorf("got %v", got)
		}
	})
}

func TestSpreadAndPeak(t *testing.T) {
	var ts []float64
	for i := range 100 {
		ts = append(ts, float64(i)/10) // 0.0 … 9.9
	}
	if got := spreadOf(ts); math.Abs(got-(9.4-0.4)) > 1e-9 {
		t.Errorf("spread of 0…9.9 = %v, want 9.0 (p95 9.4 − p5 0.4)", got)
	}
	if got := peakBin(ts, 1); got != 10 {
		t.Errorf("peak per 1s of 10/s = %d, want 10", got)
	}
	if got := peakBin([]float64{-0.5, -0.2, 0.1}, 1); got != 2 {
		t.Errorf("negative times share a bin below 0: peak %d, want 2", got)
	}
	if spreadOf(nil) != 0 || peakBin(nil, 1) != 0 {
		t.Error("empty input must give 0")
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(ds, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("quantile reordered its input")
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing must be 0")
	}
}

// halfPolicy is the soak policy with the refresh fraction these tests'
// timings were worked out for (0.5), whatever the production default.
func halfPolicy(c soakConfig) policy {
	p := soakPolicy(c)
	p.RefreshFraction = 0.5
	return p
}

func TestPolicyDelay(t *testing.T) {
	p := halfPolicy(soakConfig{lifetime: 12 * time.Second, latency: 50 * time.Millisecond})
	// The cache sees 11–12 s (whole seconds): refresh at 50 % of that less
	// up to 10 %: 5.5 s − 1.1 s at the earliest, 6 s at the latest ...
	if lo, mean, hi := p.delay(); lo != 4400*time.Millisecond || hi != 6*time.Second || mean != 5175*time.Millisecond {
		t.Errorf("delay = %v, %v, %v; want 4.4s, 5.175s, 6s", lo, mean, hi)
	}
	// ... and a period adds the call's 50 ms.
	if lo, mean, hi := p.period(); lo != 4450*time.Millisecond || hi != 6050*time.Millisecond || mean != 5225*time.Millisecond {
		t.Errorf("period = %v, %v, %v; want 4.45s, 5.225s, 6.05s", lo, mean, hi)
	}
}

// soakCalls makes the STS calls of entries that refresh every step from
// start on, the first at start, each answered after 50 ms.
func soakCalls(start time.Time, entries, calls int, step time.Duration) []stsCall {
	var out []stsCall
	for e := range entries {
		for k := range calls {
			out = append(out, call(start.Add(time.Duration(k)*step+time.Duration(e)*time.Millisecond), string(rune('a'+e))))
		}
	}
	return out
}

func call(at time.Time, session string) stsCall {
	return stsCall{at: at, end: at.Add(50 * time.Millisecond), session: session}
}

func TestSoakAnalysis(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	newResult := func(calls []stsCall) *soakResult {
		r := &soakResult{
			cfg:        soakConfig{entries: 3, lifetime: 12 * time.Second},
			policy:     halfPolicy(soakConfig{lifetime: 12 * time.Second, latency: 50 * time.Millisecond}),
			agentStart: start, runStart: start.Add(time.Second), runEnd: start.Add(31 * time.Second), calls: calls,
		}
		r.analyse()
		return r
	}
	t.Run("entries refreshing on the policy's schedule pass", func(t *testing.T) {
		r := newResult(soakCalls(start, 3, 6, 5450*time.Millisecond)) // 0 … 27.25 s
		if !r.scheduled() || r.warmupCalls != 3 || r.runCalls != 15 || r.minCalls != 5 || r.maxCalls != 5 {
			t.Errorf("scheduled %v, warm-up %d, run %d, per entry %d…%d", r.scheduled(), r.warmupCalls, r.runCalls, r.minCalls, r.maxCalls)
		}
		if r.plannedLo > 15 || r.plannedHi < 15 {
			t.Errorf("planned %d … %d does not hold the 15 calls made", r.plannedLo, r.plannedHi)
		}
	})
	t.Run("a duplicate call is off the schedule", func(t *testing.T) {
		calls := soakCalls(start, 3, 6, 5450*time.Millisecond)
		calls = append(calls, call(start.Add(5500*time.Millisecond), "a"))
		if r := newResult(calls); r.scheduled() || r.outside == 0 {
			t.Errorf("duplicate not flagged: outside %d", r.outside)
		}
	})
	t.Run("an entry that stops refreshing is stalled", func(t *testing.T) {
		calls := soakCalls(start, 2, 6, 5450*time.Millisecond) // "a" and "b" keep going
		calls = append(calls, call(start, "c"), call(start.Add(5450*time.Millisecond), "c"))
		r := newResult(calls)
		if r.stalled != 1 || r.outside != 0 || r.scheduled() {
			t.Errorf("stall not flagged alone: stalled %d, outside %d", r.stalled, r.outside)
		}
	})
	t.Run("a call that waited for a refresh slot does not make the next one early", func(t *testing.T) {
		calls := soakCalls(start, 3, 6, 5450*time.Millisecond)
		// "a"'s second call waits 600 ms for a slot; its third comes the
		// usual delay after that call's answer, 4.85 s after its start.
		for i := range calls {
			if calls[i].session == "a" && calls[i].at.After(start.Add(5*time.Second)) {
				calls[i].at, calls[i].end = calls[i].at.Add(600*time.Millisecond), calls[i].end.Add(600*time.Millisecond)
			}
		}
		if r := newResult(calls); !r.scheduled() {
			t.Errorf("a slot wait flagged: outside %d, stalled %d, off plan %d", r.outside, r.stalled, r.offCount)
		}
	})
	t.Run("calls after the run are not counted", func(t *testing.T) {
		r := newResult(soakCalls(start, 3, 8, 5450*time.Millisecond)) // two past 31 s
		if r.runCalls != 15 {
			t.Errorf("run calls %d, want 15", r.runCalls)
		}
	})
}

func TestFiguresAreADecodablePNG(t *testing.T) {
	start := time.Now()
	ms := time.Millisecond
	r := &results{
		storm: &stormResult{cfg: stormConfig{pods: 2, serviceAccounts: 1}, stsCalls: 1,
			createToCreds: []time.Duration{120 * ms, 300 * ms}, requestToCreds: []time.Duration{100 * ms, 110 * ms, 250 * ms}},
		churn: &churnResult{cfg: churnConfig{rate: 20}, order: []string{"steady", "churn"},
			steady: loadgen.Series{Results: []loadgen.Result{{P99: 2 * ms}}}, churn: loadgen.Series{Results: []loadgen.Result{{P99: 3 * ms}}}},
		soak: &soakResult{cfg: soakConfig{entries: 3, lifetime: 12 * time.Second}, agentStart: start, runStart: start.Add(time.Second),
			runEnd: start.Add(4 * time.Second), runCalls: 3, binsPrefetch: []int{3, 0, 0, 0}, binsRefresh: []int{0, 1, 2, 0}},
		memory: &memoryResult{cfg: memoryConfig{pods: [2]int{250, 1000}}, perPod: 3000, perEntry: 9000, samples: []memSample{
			{plot: "idle", rssAnon: 5 << 20, rssFile: 14 << 20, heapLive: 2 << 20},
			{plot: "250", rssAnon: 8 << 20, rssFile: 15 << 20, heapLive: 4 << 20}}},
	}
	path := filepath.Join(t.TempDir(), "scale.png")
	if err := writeFigures(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if got := img.Bounds().Size(); got.X != 1600 || got.Y != 1200 {
		t.Errorf("size %v, want 1600×1200", got)
	}
	colours := map[[3]uint32]bool{}
	for y := 0; y < 1200; y += 3 {
		for x := 0; x < 1600; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r, g, b}] = true
		}
	}
	if len(colours) < 5 {
		t.Errorf("%d colours: the figure looks blank", len(colours))
	}
}

func TestTables(t *testing.T) {
	tb := table{Title: "T", Header: []string{"figure", "value"}, Rows: [][]string{{"a", "1"}, {"longer", "22|3"}}, Notes: []string{"n"}}
	var text, md bytes.Buffer
	tb.writeText(&text)
	tb.writeMarkdown(&md)
	if want := "figure  value\na           1\nlonger   22|3\n"; !strings.Contains(text.String(), want) {
		t.Errorf("text table:\n%s\nwant it to contain:\n%s", text.String(), want)
	}
	if !strings.Contains(md.String(), "| longer | 22\\|3 |") || !strings.Contains(md.String(), "|---|--:|") || !strings.Contains(md.String(), "- n") {
		t.Errorf("markdown table:\n%s", md.String())
	}
	if failed([]check{{Verdict: "PASS"}, {Verdict: "MISSES"}}) || !failed([]check{{Verdict: "FAIL"}}) {
		t.Error("only FAIL fails the run")
	}
}

func TestTextMetric(t *testing.T) {
	exp := "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 42\ngo_memstats_heap_alloc_bytes 1.2345e+07\npodcreds_http_requests_total{code=\"200\"} 9\n"
	if v, ok := textMetric(exp, "go_goroutines"); !ok || v != 42 {
		t.Errorf("go_goroutines = %v, %v", v, ok)
	}
	if v, ok := textMetric(exp, "go_memstats_heap_alloc_bytes"); !ok || v != 12345000 {
		t.Errorf("heap = %v, %v", v, ok)
	}
	if _, ok := textMetric(exp, "podcreds_http_requests_total"); ok {
		t.Error("a labelled series is not an unlabelled sample")
	}
}

func TestHelpers(t *testing.T) {
	if got := statusCounts(map[int]int{503: 4, 0: 1}); got != "conn-error×1 503×4" {
		t.Errorf("statusCounts = %q", got)
	}
	if got := rotate([]int{1, 2, 3, 4}, 5); !slices.Equal(got, []int{2, 3, 4, 1}) {
		t.Errorf("rotate = %v", got)
	}
	if got := podAddr(30, 251).String(); got != "127.30.1.2" {
		t.Errorf("podAddr(30, 251) = %s", got)
	}
}

func TestCPUUse(t *testing.T) {
	at := time.Now()
	a := cpuSample{at: at, self: 10, busy: 30}
	b := cpuSample{at: at.Add(2 * time.Second), self: 12, busy: 35}
	if got := b.since(a); got != (cpuUse{self: 1, other: 1.5}) {
		t.Errorf("since = %+v, want 1 core here and 1.5 elsewhere", got)
	}
	if got := a.since(a); got != (cpuUse{}) {
		t.Errorf("no time passed: %+v", got)
	}
	if s := readCPU(); s.busy < s.self {
		t.Errorf("this process used more CPU (%v s) than the machine (%v s)", s.self, s.busy)
	}
}

func TestReadBinaryMaps(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m, err := readBinaryMaps(os.Getpid(), exe)
	if err != nil {
		t.Fatal(err)
	}
	// This test is running, so some of its own code is resident.
	if m.textSize == 0 || m.textRSS == 0 || m.textRSS > m.textSize || m.roSize == 0 || m.roRSS > m.roSize {
		t.Errorf("own binary maps: %+v", m)
	}
	if none, err := readBinaryMaps(os.Getpid(), "/no/such/binary"); err != nil || none != (binaryMaps{}) {
		t.Errorf("maps of a binary not mapped: %+v, %v", none, err)
	}
}

func TestMemoryFigures(t *testing.T) {
	const mib = 1 << 20
	sample := func(pods int, entries, live, rss float64) memSample {
		return memSample{label: fmt.Sprint(pods), pods: pods, entries: entries, heapLive: live, rss: rss}
	}
	t.Run("heap per pod and per entry come from the two pairs of sizes", func(t *testing.T) {
		var r memoryResult
		r.derive(sample(250, 250, 6*mib, 20*mib), sample(1000, 250, 8*mib, 30*mib), sample(250, 50, 5*mib, 19*mib))
		if want := float64(2*mib) / 750; r.perPod != want {
			t.Errorf("per pod %v, want %v", r.perPod, want)
		}
		if want := float64(mib) / 200; r.perEntry != want {
			t.Errorf("per entry %v, want %v", r.perEntry, want)
		}
		if c := r.checks()[0]; c.Verdict != "MEETS" || !strings.Contains(c.Measured, "30.0 MiB") {
			t.Errorf("goal check %+v, want 30.0 MiB MEETS", c)
		}
	})
	t.Run("an agent above the goal misses it", func(t *testing.T) {
		var r memoryResult
		r.derive(sample(250, 250, 6*mib, 20*mib), sample(1000, 250, 8*mib, 33*mib), sample(250, 50, 5*mib, 19*mib))
		if c := r.checks()[0]; c.Verdict != "MISSES" {
			t.Errorf("goal check %+v, want MISSES", c)
		}
	})
}

func TestSumByModule(t *testing.T) {
	syms := []symbol{
		{"k8s.io/client-go/rest.(*Request).Do", 500, true},
		{"k8s.io/client-go/tools/cache.(*Reflector).ListAndWatch.func1", 250, true},
		{"type:*k8s.io/apimachinery/pkg/types.UID", 200, false},
		{"go:itab.*github.com/podcreds/podcreds/cache.entry,error", 100, false},
		{"runtime.mallocgc", 200, true},
		{"github.com/go-jose/go-jose/v4.ParseSignedCompact[...]", 50, true},
	}
	mods := []string{"k8s.io/client-go", "k8s.io/apimachinery", "github.com/podcreds/podcreds", "github.com/go-jose/go-jose/v4", "k8s.io/client-go"}
	got := map[string]int64{}
	// 1000 bytes without a symbol, shared by code: client-go has 750 of
	// the 1000 bytes of code, the runtime 200, go-jose 50.
	for _, l := range sumByModule(syms, 2300, mods) {
		got[l.module] = l.bytes
	}
	want := map[string]int64{"k8s.io/client-go": 750 + 750, "k8s.io/apimachinery": 200, "github.com/podcreds/podcreds": 100,
		"Go runtime and standard library": 200 + 200, "github.com/go-jose/go-jose/v4": 50 + 50}
	if !maps.Equal(got, want) {
		t.Errorf("sums %v, want %v", got, want)
	}
}

func TestHeapTrend(t *testing.T) {
	tests := []struct {
		name   string
		series []float64
		flat   bool
	}{
		{"a level heap with noise is flat", []float64{10, 11, 10, 12, 10, 11, 10, 10, 11}, true},
		{"a heap that shrinks is flat", []float64{12, 12, 12, 11, 11, 11, 10, 10, 10}, true},
		{"a heap that climbs by a tenth is growing", []float64{10, 10, 10, 10.5, 10.5, 10.5, 11, 11, 11}, false},
		{"too few samples are not called flat", []float64{10, 10}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := trendOf(tt.series).flat(); got != tt.flat {
				t.Errorf("flat = %v, want %v (%v)", got, tt.flat, trendOf(tt.series))
			}
		})
	}
}
