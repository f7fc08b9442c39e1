package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on every Linux
// architecture Go supports).
const userHZ = 100

// cpuSample is cumulative CPU time at one moment: this process's (agent,
// load generator and churn driver when the agent runs in-process) and the
// whole machine's. Zero where /proc is missing.
type cpuSample struct {
	at         time.Time
	self, busy float64 // seconds
}

// cpuUse is CPU consumed between two samples, in cores.
type cpuUse struct{ self, other float64 }

func readCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state is the first, utime the 12th, stime the 13th.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseFloat(f[11], 64)
				k, _ := strconv.ParseFloat(f[12], 64)
				s.self = (u + k) / userHZ
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal …
		if len(f) > 8 && f[0] == "cpu" {
			for _, i := range []int{1, 2, 3, 6, 7, 8} {
				v, _ := strconv.ParseFloat(f[i], 64)
				s.busy += v / userHZ
			}
		}
	}
	return s
}

// since returns the cores used from a to b: by this process, and by
// everything else on the machine.
func (b cpuSample) since(a cpuSample) cpuUse {
	d := b.at.Sub(a.at).Seconds()
	if d <= 0 {
		return cpuUse{}
	}
	self := (b.self - a.self) / d
	return cpuUse{self: self, other: max((b.busy-a.busy)/d-self, 0)}
}

// medianUse returns the per-field medians of us.
func medianUse(us []cpuUse) cpuUse {
	var self, other []time.Duration
	for _, u := range us {
		self = append(self, time.Duration(u.self*1e6))
		other = append(other, time.Duration(u.other*1e6))
	}
	return cpuUse{self: float64(quantile(self, .5)) / 1e6, other: float64(quantile(other, .5)) / 1e6}
}
