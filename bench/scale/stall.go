package main

import (
	"sync"
	"time"
)

// stallWatch measures how long this process went without running: a
// goroutine sleeps a short period again and again, and any time beyond the
// period is a stall (the machine busy elsewhere, the VM descheduled, a long
// GC pause). On a shared machine a stall of seconds explains figures that
// would otherwise look like the agent's fault: every timer in the process
// fires late at once.
type stallWatch struct {
	mu      sync.Mutex
	longest time.Duration
	cpu     cpuSample
	stop    chan struct{}
	done    chan struct{}
}

const stallPeriod = 10 * time.Millisecond

func watchStalls() *stallWatch {
	w := &stallWatch{cpu: readCPU(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			// The clock is read after waking, so lateness of the timer and
			// of this goroutine's scheduling both count.
			began := time.Now()
			select {
			case <-w.stop:
				return
			case <-time.After(stallPeriod):
			}
			late := time.Since(began) - stallPeriod
			w.mu.Lock()
			w.longest = max(w.longest, late)
			w.mu.Unlock()
		}
	}()
	return w
}

// reset returns the longest stall and the CPU used by the rest of the
// machine since the last reset, and starts over.
func (w *stallWatch) reset() (time.Duration, cpuUse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := readCPU()
	longest, use := w.longest, now.since(w.cpu)
	w.longest, w.cpu = 0, now
	return longest, use
}

func (w *stallWatch) close() {
	close(w.stop)
	<-w.done
}
