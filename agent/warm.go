package agent

import (
	"context"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podcreds/podcreds/cache"
)

// Settler is what warm-up asks of the cache, when the cache can tell: has a
// key's first fetch ended (credentials or a failure)? A cache that cannot
// tell counts as settled, and the agent is warm once its informer syncs.
type Settler interface {
	Settled(key cache.Key) bool
}

// warmPoll is how often a starting agent checks whether it is warm.
const warmPoll = 20 * time.Millisecond

// waitWarm returns once every pod the informer knows has been through the
// binder and every key the binder holds has settled in the cache, or after
// WarmTimeout (logged, not an error: an agent that never joins serves
// nobody, and one slow role must not keep the rest of the node waiting).
func (a *Agent) waitWarm(ctx context.Context, start time.Time) error {
	deadline := time.NewTimer(a.opts.WarmTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(warmPoll)
	defer tick.Stop()
	settler, _ := a.cache.(Settler)
	for {
		pending := a.binder.pending(a.index.UIDs(), settler)
		if pending == 0 {
			a.warm.Store(true)
			a.logger.Info("warm: every pod's credentials are fetched or failed", zap.Duration("sinceStart", time.Since(start)))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			a.warm.Store(true)
			a.logger.Warn("not warm within the warm timeout; serving anyway", zap.Int("pendingPods", pending),
				zap.Duration("timeout", a.opts.WarmTimeout))
			return nil
		case <-tick.C:
		}
	}
}

// Warm reports whether the agent has finished warming up (it may since have
// started shutting down; Ready says whether it serves).
func (a *Agent) Warm() bool { return a.warm.Load() }

// pending counts the pods in uids that the binder has not handled yet, or
// whose credentials have not settled.
func (b *binder) pending(uids []types.UID, s Settler) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := 0
	for _, uid := range uids {
		if _, seen := b.seen[uid]; !seen {
			n++
			continue
		}
		if key, bound := b.bound[uid]; bound && s != nil && !s.Settled(key) {
			n++
		}
	}
	return n
}
