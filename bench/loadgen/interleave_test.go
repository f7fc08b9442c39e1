package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// targetsNamed returns targets whose Config.URL is their name, so a fake
// runner can tell them apart.
func targetsNamed(names ...string) []Target {
	ts := make([]Target, len(names))
	for i, n := range names {
		ts[i] = Target{Name: n, Config: Config{URL: n}}
	}
	return ts
}

func TestInterleaveOrder(t *testing.T) {
	tests := []struct {
		name    string
		rounds  int
		targets []string
		want    string // run order, "name/round"
	}{
		{"two targets alternate ABBA", 4, []string{"A", "B"}, "A1 B1 B2 A2 A3 B3 B4 A4"},
		{"three targets reverse every other round", 3, []string{"A", "B", "C"}, "A1 B1 C1 C2 B2 A2 A3 B3 C3"},
		{"one target just repeats", 2, []string{"A"}, "A1 A2"},
		{"zero rounds run nothing", 0, []string{"A", "B"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var order []string
			count := map[string]int{}
			run := func(_ context.Context, c Config) (Result, error) {
				count[c.URL]++
				order = append(order, fmt.Sprintf("%s%d", c.URL, count[c.URL]))
				return Result{Requests: count[c.URL]}, nil
			}
			series, err := interleave(t.Context(), tt.rounds, targetsNamed(tt.targets...), run)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(order, " "); got != tt.want {
				t.Errorf("order %q, want %q", got, tt.want)
			}
			for i, s := range series {
				if s.Name != tt.targets[i] || len(s.Results) != tt.rounds {
					t.Errorf("series %d: %s with %d results", i, s.Name, len(s.Results))
				}
				for r, res := range s.Results {
					if res.Requests != r+1 {
						t.Errorf("series %s: round %d holds the result of round %d", s.Name, r+1, res.Requests)
					}
				}
			}
		})
	}
}

func TestInterleaveStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	run := func(_ context.Context, c Config) (Result, error) {
		calls++
		if calls == 3 { // B in round 2
			return Result{}, boom
		}
		return Result{}, nil
	}
	series, err := interleave(t.Context(), 5, targetsNamed("A", "B"), run)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "B, round 2") {
		t.Errorf("error %v, want boom naming B, round 2", err)
	}
	if calls != 3 || len(series[0].Results) != 1 || len(series[1].Results) != 1 {
		t.Errorf("%d calls, %d and %d results kept", calls, len(series[0].Results), len(series[1].Results))
	}
}

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		results []Result
		want    Summary
	}{
		{"no rounds give zeros", nil, Summary{}},
		{
			"an odd count takes the middle of each field independently",
			[]Result{
				{RPS: 300, P50: 1 * ms, P90: 5 * ms, P99: 9 * ms},
				{RPS: 100, P50: 3 * ms, P90: 4 * ms, P99: 7 * ms, Errors: 2},
				{RPS: 200, P50: 2 * ms, P90: 6 * ms, P99: 8 * ms},
			},
			Summary{Rounds: 3, RPS: 200, P50: 2 * ms, P90: 5 * ms, P99: 8 * ms, Errors: 2},
		},
		{
			"an even count averages the two middles",
			[]Result{{RPS: 100, P50: 1 * ms}, {RPS: 400, P50: 4 * ms}, {RPS: 200, P50: 2 * ms}, {RPS: 300, P50: 3 * ms}},
			Summary{Rounds: 4, RPS: 250, P50: 2500 * time.Microsecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.results)
			if got := Summarize(tt.results); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if !slices.Equal(before, tt.results) {
				t.Error("Summarize reordered its input")
			}
		})
	}
}

func TestCompare(t *testing.T) {
	a := Summary{RPS: 500, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond}
	b := Summary{RPS: 1000, P50: 1 * time.Millisecond, P99: 4 * time.Millisecond}
	if got, want := Compare(a, b), (Ratio{RPS: 0.5, P50: 2, P99: 2.5}); got != want {
		t.Errorf("Compare = %+v, want %+v", got, want)
	}
	if got := Compare(a, Summary{}); got != (Ratio{}) {
		t.Errorf("Compare against zeros = %+v, want zeros", got)
	}
}

func TestFormatTable(t *testing.T) {
	us := time.Microsecond
	series := []Series{
		{Name: "bare", Config: Config{KeepAlive: true}, Results: []Result{{RPS: 20000, P50: 80 * us, P99: 900 * us}}},
		{Name: "podcreds", Config: Config{}, Results: []Result{{RPS: 5000, P50: 1500 * us, P99: 12 * time.Millisecond, Errors: 3}}},
	}
	t.Run("rows show medians and the ratio to the baseline", func(t *testing.T) {
		var sb strings.Builder
		if err := FormatTable(&sb, "bare", series); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(sb.String(), "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("want a header and two rows:\n%s", sb.String())
		}
		for i, want := range [][]string{
			{"target", "mode", "req/s", "p50", "p99", "errors", "vs base"},
			{"bare", "keepalive", "20000", "80.0µs", "900.0µs", "0", "1.00x"},
			{"podcreds", "conn/req", "5000", "1.50ms", "12.00ms", "3", "0.25x"},
		} {
			for _, w := range want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d %q lacks %q", i, lines[i], w)
				}
			}
		}
	})
	t.Run("an empty baseline means the first series", func(t *testing.T) {
		var sb strings.Builder
		if err := FormatTable(&sb, "", series[1:]); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(sb.String(), "1.00x") {
			t.Errorf("first series not its own baseline:\n%s", sb.String())
		}
	})
	t.Run("an unknown baseline is an error", func(t *testing.T) {
		if err := FormatTable(&strings.Builder{}, "nope", series); err == nil {
			t.Error("FormatTable accepted an unknown baseline")
		}
	})
}

func TestInterleaveSamplesServerCPUAroundEachRound(t *testing.T) {
	var now time.Duration
	sample := func() (time.Duration, error) { return now, nil }
	run := func(_ context.Context, c Config) (Result, error) {
		if c.URL == "A" {
			now += 30 * time.Millisecond // A's server works during A's rounds only
		} else {
			now += 10 * time.Millisecond
		}
		return Result{Requests: 10}, nil
	}
	ts := targetsNamed("A", "B")
	ts[0].CPU, ts[1].CPU = sample, sample
	series, err := interleave(t.Context(), 3, ts, run)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{3 * time.Millisecond, time.Millisecond} {
		if got := series[i].Summary().CPUPerResponse; got != want {
			t.Errorf("%s: CPU per response %s, want %s", series[i].Name, got, want)
		}
	}
}

func TestPairedCPUComparesRoundsOfAPair(t *testing.T) {
	round := func(cpu time.Duration) Result { return Result{Requests: 1000, ServerCPU: cpu} }
	// b drifts 10x over the run; a is 1.1x b in every round but one. The
	// ratio of the medians mixes the drift in; the paired ratio does not.
	a := Series{Results: []Result{round(11 * time.Millisecond), round(110 * time.Millisecond), round(55 * time.Millisecond), round(22 * time.Millisecond), round(0)}}
	b := Series{Results: []Result{round(10 * time.Millisecond), round(100 * time.Millisecond), round(50 * time.Millisecond), round(10 * time.Millisecond), round(10 * time.Millisecond)}}
	got := PairedCPU(a, b)
	if got.Rounds != 4 {
		t.Fatalf("%d rounds, want 4 (a round without a CPU figure is left out)", got.Rounds)
	}
	if math.Abs(got.Median-1.1) > 1e-9 || math.Abs(got.Q1-1.1) > 1e-9 || math.Abs(got.Q3-1.375) > 1e-9 {
		t.Fatalf("spread %+v, want median 1.1, Q1 1.1, Q3 1.375", got)
	}
	if (PairedCPU(Series{}, b) != Spread{}) {
		t.Fatal("a series without rounds has a spread")
	}
}
