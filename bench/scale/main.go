// Command scale runs podcreds' scale benchmarks (issue 7) against one real
// control plane (internal/testkit/testenv: etcd, kube-apiserver, MinIO):
//
//   - storm: a cold agent, hundreds of pods starting at once, several first
//     requests each — STS calls must equal ServiceAccounts;
//   - churn: the hot path under steady load, with and without pods created
//     and deleted on the node, in interleaved rounds;
//   - soak: short-lived credentials refreshed over many cycles — nothing
//     waits on STS, nothing expired is served, refreshes stay spread;
//   - warmstart: an agent starting on a node that already runs hundreds of
//     pods (an upgrade) — time until it is warm and serving;
//   - memory: the agent binary's RSS and live heap with 250 and 1000 pods,
//     heap per pod and per credential entry, and what each library adds
//     to the binary.
//
// It prints a table per scenario and a summary, and writes every figure to
// a Markdown file and a PNG (drawn with gonum.org/v1/plot) in -out. It exits 1 if a hard check fails (a
// missed memory goal is reported, not failed).
//
//	go run ./bench/scale [-only storm,churn,soak,memory] [-agent bin/podcreds]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

var scenarios = []string{"storm", "warmstart", "churn", "soak", "memory"}

func main() {
	only := flag.String("only", strings.Join(scenarios, ","), "scenarios to run, comma-separated: "+strings.Join(scenarios, ", "))
	out := flag.String("out", filepath.Join("bench", "scale", "out"), "directory for results.md, scale.png and agent logs")
	agentBin := flag.String("agent", "", "podcreds binary for the memory scenario; empty builds ./cmd/podcreds into a temporary directory")
	storm := stormConfig{perPod: 4}
	flag.IntVar(&storm.pods, "storm-pods", 250, "storm: pods")
	flag.IntVar(&storm.serviceAccounts, "storm-sas", 50, "storm: ServiceAccounts")
	flag.DurationVar(&storm.latency, "storm-sts-latency", 100*time.Millisecond, "storm: STS latency")
	warm := warmConfig{starts: 5}
	flag.IntVar(&warm.pods, "warm-pods", 250, "warmstart: pods on the node")
	flag.IntVar(&warm.serviceAccounts, "warm-sas", 50, "warmstart: ServiceAccounts")
	flag.DurationVar(&warm.latency, "warm-sts-latency", 100*time.Millisecond, "warmstart: STS latency")
	churn := churnConfig{hotPods: 32, churnSAs: 10}
	flag.IntVar(&churn.rounds, "churn-rounds", 4, "churn: rounds of each of steady and churn")
	flag.DurationVar(&churn.round, "churn-round", 15*time.Second, "churn: length of one round")
	flag.Float64Var(&churn.rate, "churn-rate", 20, "churn: pods created (and deleted) per second")
	flag.DurationVar(&churn.life, "churn-pod-life", 2*time.Second, "churn: how long a churn pod lives")
	flag.IntVar(&churn.concurrency, "churn-concurrency", 8, "churn: load generator connections")
	var soak soakConfig
	flag.IntVar(&soak.entries, "soak-entries", 250, "soak: pods, each in its own ServiceAccount")
	flag.DurationVar(&soak.lifetime, "soak-lifetime", 12*time.Second, "soak: credential lifetime")
	flag.DurationVar(&soak.duration, "soak-duration", 60*time.Second, "soak: measured run")
	flag.Float64Var(&soak.perPodRate, "soak-rate", 2, "soak: requests per second per pod")
	// Compressed too: 10 ms stands for seconds of real STS latency. At 50 ms
	// the cache's 8 refresh slots, sized for hour-long lifetimes, become the
	// bottleneck of a 300-times compressed run, which the real one never is.
	flag.DurationVar(&soak.latency, "soak-sts-latency", 10*time.Millisecond, "soak: STS latency")
	flag.Parse()

	selected := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); !slices.Contains(scenarios, s) {
			fmt.Fprintf(os.Stderr, "scale: unknown scenario %q (have %s)\n", s, strings.Join(scenarios, ", "))
			os.Exit(2)
		}
		selected[s] = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Bounded whatever happens: the defaults take about five minutes.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	mem := memoryConfig{serviceAccounts: 250, pods: [2]int{250, 1000}, outDir: *out}
	if *agentBin != "" {
		abs, err := filepath.Abs(*agentBin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(2)
		}
		mem.agentBin = abs
	}
	failedChecks, err := run(ctx, selected, *out, storm, warm, churn, soak, mem)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	if failedChecks {
		fmt.Fprintln(os.Stderr, "scale: FAIL: a check did not hold (see the summary)")
		os.Exit(1)
	}
}

func run(ctx context.Context, selected map[string]bool, out string, storm stormConfig, warm warmConfig, churn churnConfig, soak soakConfig, mem memoryConfig) (bool, error) {
	started := time.Now()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return false, err
	}
	logger, err := fileLogger(filepath.Join(out, "agents.log"))
	if err != nil {
		return false, err
	}
	defer func() { _ = logger.Sync() }()

	// The binary builds, and its symbols are counted, while the control
	// plane starts.
	built := make(chan error, 1)
	if selected["memory"] {
		dir, err := os.MkdirTemp("", "podcreds-scale-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
		go func() {
			var err error
			if mem.agentBin == "" {
				mem.agentBin = filepath.Join(dir, "podcreds")
				err = build(ctx, "./cmd/podcreds", mem.agentBin)
			}
			if err == nil {
				mem.libs, err = libraryCosts(ctx, "./cmd/podcreds", dir)
			}
			built <- err
		}()
	} else {
		built <- nil
	}
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return false, err
	}
	defer env.Stop()
	fmt.Printf("scale: control plane up in %s\n", time.Since(started).Round(100*time.Millisecond))
	if err := <-built; err != nil {
		return false, fmt.Errorf("building the agent: %w", err)
	}

	var res results
	var tables []table
	var checks []check
	var errs []error
	stalls := watchStalls()
	defer stalls.close()
	step := func(name string, f func() ([]table, []check, error)) {
		if !selected[name] || ctx.Err() != nil {
			return
		}
		began := time.Now()
		fmt.Printf("scale: %s…\n", name)
		stalls.reset()
		ts, cs, err := f()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			checks = append(checks, check{Scenario: name, Figure: "ran", Measured: err.Error(), Verdict: "FAIL"})
			return
		}
		cs = append(cs, disturbance(name, stalls)...)
		for _, t := range ts {
			t.writeText(os.Stdout)
		}
		fmt.Printf("scale: %s took %s\n", name, time.Since(began).Round(time.Second))
		tables, checks = append(tables, ts...), append(checks, cs...)
	}
	step("storm", func() ([]table, []check, error) {
		r, err := runStorm(ctx, env, logger, storm)
		if err != nil {
			return nil, nil, err
		}
		res.storm = r
		return r.tables(), r.checks(), nil
	})
	step("warmstart", func() ([]table, []check, error) {
		r, err := runWarmStart(ctx, env, logger, warm)
		if err != nil {
			return nil, nil, err
		}
		return r.tables(), r.checks(), nil
	})
	step("churn", func() ([]table, []check, error) {
		r, err := runChurn(ctx, env, logger, churn)
		if err != nil {
			return nil, nil, err
		}
		res.churn = r
		return r.tables(), r.checks(), nil
	})
	step("soak", func() ([]table, []check, error) {
		r, err := runSoak(ctx, env, logger, soak)
		if err != nil {
			return nil, nil, err
		}
		res.soak = r
		return r.tables(), r.checks(), nil
	})
	step("memory", func() ([]table, []check, error) {
		r, err := runMemory(ctx, env, mem)
		if err != nil {
			return nil, nil, err
		}
		res.memory = r
		return r.tables(), r.checks(), nil
	})

	summaryTable(checks).writeText(os.Stdout)
	png := filepath.Join(out, "scale.png")
	if err := writeFigures(png, &res); err != nil {
		errs = append(errs, fmt.Errorf("plot: %w", err))
	}
	md := filepath.Join(out, "results.md")
	f, err := os.Create(md)
	if err != nil {
		return false, errors.Join(append(errs, err)...)
	}
	writeResults(f, started, time.Since(started), tables, checks, "scale.png")
	if err := f.Close(); err != nil {
		errs = append(errs, err)
	}
	fmt.Printf("\nscale: wrote %s and %s in %s\n", md, png, time.Since(started).Round(time.Second))
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return failed(checks), errors.Join(errs...)
}

// build builds pkg of the module this runs in to path with the Makefile's
// recipe (static, stripped: what the image ships).
func build(ctx context.Context, pkg, path string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "build", "BUILD_PKG="+pkg, "PODCREDS_BIN="+path)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// moduleRoot is the directory of the podcreds checkout this runs in.
func moduleRoot(ctx context.Context) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("run from the podcreds checkout, or pass -agent (go env GOMOD: %q, %v)", gomod, err)
	}
	return filepath.Dir(strings.TrimSpace(string(gomod))), nil
}

// fileLogger writes the in-process agents' warnings and errors to path, out
// of the tables' way.
func fileLogger(path string) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{path}, []string{path}
	zc.DisableStacktrace = true
	zc.Sampling = nil
	return zc.Build()
}

// stallLimit is the longest stall of the bench process that leaves a
// scenario's timing figures meaningful.
const stallLimit = time.Second

// disturbance reports how undisturbed a scenario ran: the longest stall of
// this process and the CPU the rest of the machine used meanwhile. After a
// longer stall than stallLimit, its FAIL verdicts are marked as disturbed,
// not explained away: rerun on a quiet machine.
func disturbance(name string, w *stallWatch) []check {
	longest, use := w.reset()
	c := check{Scenario: name, Figure: "stall of this process; others' CPU",
		Measured: fmt.Sprintf("%s; %.2f cores", fmtDur(longest), use.other), Goal: "stall < " + fmtDur(stallLimit)}
	if longest >= stallLimit {
		c.Verdict = "DISTURBED"
	}
	return []check{c}
}
