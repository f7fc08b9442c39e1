package agent

import (
	"net/netip"
	"sync"
	"time"
)

// refusalLogInterval is how often one source address's refusals of one code
// are logged at info (warn for 5xx). A pod whose SDK retries every second on
// a refusal that never clears shows up once a minute, not sixty times.
const refusalLogInterval = time.Minute

// maxRefusalKeys bounds the memory of refusalLog: a flood from many
// addresses (a scan of the node's pod range) cannot grow it further. Beyond
// it, refusals from new addresses are logged at debug only until old entries
// lapse.
const maxRefusalKeys = 4096

// refusalLog decides which refusals an operator sees in default logs: the
// first of each (source address, code) per interval. The others are counted
// and the count is reported with the next line logged for that pair. Safe
// for concurrent use.
type refusalLog struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[refusalKey]refusalSeen
}

type refusalKey struct {
	addr netip.Addr
	code string
}

type refusalSeen struct {
	logged     time.Time // when a line was last logged for this key
	suppressed int       // refusals since then that were not
}

func newRefusalLog() *refusalLog {
	return &refusalLog{interval: refusalLogInterval, now: time.Now, seen: map[refusalKey]refusalSeen{}}
}

// admit reports whether a refusal of code to addr is logged at info or warn,
// and how many refusals of the pair went unlogged since the last line.
func (l *refusalLog) admit(addr netip.Addr, code string) (log bool, suppressed int) {
	now := l.now()
	k := refusalKey{addr, code}
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.seen[k]
	if ok && now.Sub(s.logged) < l.interval {
		s.suppressed++
		l.seen[k] = s
		return false, 0
	}
	if !ok && len(l.seen) >= maxRefusalKeys {
		l.sweep(now)
		if len(l.seen) >= maxRefusalKeys {
			return false, 0
		}
	}
	l.seen[k] = refusalSeen{logged: now}
	return true, s.suppressed
}

// sweep forgets pairs last logged an interval ago or more; their next
// refusal is logged anyway. Called with mu held.
func (l *refusalLog) sweep(now time.Time) {
	for k, s := range l.seen {
		if now.Sub(s.logged) >= l.interval {
			delete(l.seen, k)
		}
	}
}
