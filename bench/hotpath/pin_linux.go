package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cpuSplit is how the run shares the machine's CPUs: the servers measured
// (the agent and the bare ceiling, one at a time under load) run on
// servers, everything else (the load generator, the API server, etcd,
// MinIO) on rest. Apart, a server's CPU per response is its own work per
// response: without the load generator's threads on the same CPUs, the
// kernel's and Go's scheduling of the two does not change from round to
// round how many responses a server's wake-up finds.
type cpuSplit struct{ servers, rest, all unix.CPUSet }

// errOneCPU is splitCPUs' answer on a machine with a single CPU, where
// nothing can run apart.
var errOneCPU = errors.New("pinning needs two CPUs")

// splitCPUs gives the servers the upper half of the CPUs this process may
// run on and the rest the lower half. It fails with errOneCPU on one CPU.
func splitCPUs() (cpuSplit, error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return cpuSplit{}, fmt.Errorf("reading this process's CPUs: %w", err)
	}
	var cpus []int
	for i := range 1024 {
		if all.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return cpuSplit{}, fmt.Errorf("%w: this process may use %d", errOneCPU, len(cpus))
	}
	s := cpuSplit{all: all}
	for i, c := range cpus {
		if i < len(cpus)/2 {
			s.rest.Set(c)
		} else {
			s.servers.Set(c)
		}
	}
	return s, nil
}

// cpuList spells set as taskset does: "0,2,3".
func cpuList(set unix.CPUSet) string {
	var b strings.Builder
	for i := range 1024 {
		if set.IsSet(i) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(i))
		}
	}
	return b.String()
}

// pinProcess moves every thread of this process to set. Threads started
// later inherit the set of the thread that starts them.
func pinProcess(set unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pinning thread %d: %w", tid, err)
		}
	}
	return nil
}

// onCPUs runs start, which starts a process, on a thread whose CPUs are set,
// so the process starts there; the thread gets its own set back after.
func onCPUs(set unix.CPUSet, start func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var own unix.CPUSet
	if err := unix.SchedGetaffinity(0, &own); err != nil {
		return err
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pinning the server: %w", err)
	}
	defer func() { _ = unix.SchedSetaffinity(0, &own) }()
	return start()
}
