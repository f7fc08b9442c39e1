package loadgen

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A real line's shape, with a command name holding ") (" to mislead.
	line := "4242 (pod) (creds) S 1 4242 4242 0 -1 4194560 1200 0 0 0 150 37 0 0 20 0 9 0 100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	got, err := parseStatCPU(line)
	if err != nil || got != 187*clockTick {
		t.Fatalf("got %s, %v; want %s", got, err, 187*clockTick)
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0 0"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	if got, err := parseSchedstat("349413478 629324 36\n"); err != nil || got != 349413478 {
		t.Fatalf("got %d, %v; want 349413478 ns", got, err)
	}
	for _, bad := range []string{"", "1 2", "x 2 3", "-1 2 3", "1 2 3 4"} {
		if _, err := parseSchedstat(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The threads' schedstat counts the time on a CPU exactly (a running
// thread's count lags by at most a scheduler tick).
func TestThreadsCPUSeesMillisecondsOfWork(t *testing.T) {
	dir := fmt.Sprintf("/proc/%d/task", os.Getpid())
	before, err := threadsCPU(dir)
	if err != nil {
		t.Fatalf("no thread schedstat on this kernel (CONFIG_SCHED_INFO; ProcessCPU would fall back to 10 ms ticks): %v", err)
	}
	for start := time.Now(); time.Since(start) < 60*time.Millisecond; {
	}
	runtime.Gosched() // a scheduling event brings the running thread's count up to date
	after, err := threadsCPU(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 40*time.Millisecond || d > 10*time.Second {
		t.Errorf("threads' CPU time moved by %s over 60 ms of spinning", d)
	}
}

func TestProcessCPUOfThisProcess(t *testing.T) {
	sample := ProcessCPU(os.Getpid())
	before, err := sample()
	if err != nil {
		t.Fatal(err)
	}
	// Burn a little more than the 10 ms resolution.
	for start := time.Now(); time.Since(start) < 60*time.Millisecond; {
	}
	after, err := sample()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < clockTick {
		t.Errorf("CPU time went from %s to %s over 60 ms of spinning", before, after)
	}
}

func TestCPUPerResponse(t *testing.T) {
	r := Result{Requests: 110, Errors: 10, ServerCPU: 50 * time.Millisecond}
	if got := r.CPUPerResponse(); got != 500*time.Microsecond {
		t.Errorf("got %s, want 500µs", got)
	}
	if (Result{Requests: 10, Errors: 10, ServerCPU: time.Second}).CPUPerResponse() != 0 {
		t.Error("a round without successes has a CPU per response")
	}
}
