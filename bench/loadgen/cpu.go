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

// ProcessCPU samples pid's utime+stime from /proc/<pid>/stat, the figures the
// kernel accounts to the process itself (every thread, none of its
// children). Its resolution is 10 ms: rounds should take a second or more.
func ProcessCPU(pid int) CPUSampler {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	return func() (time.Duration, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		return parseStatCPU(string(b))
	}
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
