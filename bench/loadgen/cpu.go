package loadgen

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUSampler returns a process's CPU time so far (user plus system). An
// interleaved run samples it before and after every round of a target, so
// the server's CPU per response is measured over exactly that round.
type CPUSampler func() (time.Duration, error)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcessCPU samples the CPU time pid has run so far, in nanoseconds: the
// sum over its threads of the scheduler's own count of time on a CPU
// (/proc/<pid>/task/<tid>/schedstat, user and system time together). The
// utime+stime of /proc/<pid>/stat count 10 ms ticks, which is a tenth of a
// paced one-second round's CPU; a thread that exits between two samples
// takes its time with it, which the Go runtime's threads, parked rather
// than ended, do not. Where schedstat is missing it falls back to the
// ticks.
func ProcessCPU(pid int) CPUSampler {
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	tasks := fmt.Sprintf("/proc/%d/task", pid)
	return func() (time.Duration, error) {
		if d, err := threadsCPU(tasks); err == nil {
			return d, nil
		}
		b, err := os.ReadFile(stat)
		if err != nil {
			return 0, err
		}
		return parseStatCPU(string(b))
	}
}

// threadsCPU sums the first field of every thread's schedstat under dir.
func threadsCPU(dir string) (time.Duration, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	read := 0
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // the thread has just exited
		}
		d, err := parseSchedstat(string(b))
		if err != nil {
			return 0, err
		}
		sum += d
		read++
	}
	if read == 0 {
		return 0, fmt.Errorf("loadgen: no thread schedstat under %s", dir)
	}
	return sum, nil
}

// parseSchedstat reads the time on a CPU, in nanoseconds, that starts a
// schedstat line ("<on cpu ns> <waiting ns> <timeslices>").
func parseSchedstat(line string) (time.Duration, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return 0, fmt.Errorf("loadgen: schedstat line %q does not have 3 fields", line)
	}
	ns, err := strconv.ParseUint(f[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("loadgen: schedstat line %q: %w", line, err)
	}
	return time.Duration(ns), nil
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat
// line. The command name (field 2) is in parentheses and may hold spaces, so
// fields are counted from the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("loadgen: malformed stat line %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("loadgen: stat line has %d fields after the name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("loadgen: stat utime %q stime %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// CPUPerResponse is a round's server CPU per successful response, or 0 when
// the round has no CPU sample or no success.
func (r Result) CPUPerResponse() time.Duration {
	ok := r.Requests - r.Errors
	if r.ServerCPU <= 0 || ok <= 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(ok)
}
