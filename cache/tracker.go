package cache

import "sync"

// tracker counts the goroutines the cache starts (fetches and refreshes), so
// that Close can wait for all of them and tests can wait for quiet between
// steps of a fake clock.
//
// Its mutex is a leaf lock: nothing else is acquired while holding it. That
// is what allows start to be called from a clock's AfterFunc callback, which
// k8s.io/utils' FakeClock runs while holding its own lock, even though the
// cache calls into the clock while holding Cache.mu.
type tracker struct {
	mu     sync.Mutex
	idle   sync.Cond // signalled when n drops to zero
	n      int
	closed bool
}

func newTracker() *tracker {
	t := &tracker{}
	t.idle.L = &t.mu
	return t
}

// start counts one more goroutine, unless the tracker is closed. The caller
// starts the goroutine only if start returned true, and that goroutine must
// call done when it ends.
func (t *tracker) start() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

// done marks the end of a goroutine counted by start.
func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		t.idle.Broadcast()
	}
}

// wait blocks until no counted goroutine is running.
func (t *tracker) wait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.n > 0 {
		t.idle.Wait()
	}
}

// close makes every later start fail.
func (t *tracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
}
