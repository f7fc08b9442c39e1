package cache

import (
	"context"
	"math"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
)

// Acquire registers pod as a user of key's entry, creating the entry if it is
// the first, and starts fetching credentials in the background if the entry
// has none and nothing is under way: no fetch in flight, no retry pending, no
// recent final failure. The agent calls it as soon as a pod with a role
// appears, so the pod's first request is a hit. Acquiring a pod twice is the
// same as once. After Close, Acquire does nothing.
func (c *Cache) Acquire(key Key, pod PodRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	e := c.lookup(key)
	if e == nil {
		e = &entry{key: key, users: make(map[types.UID]user)}
		e.refreshAt.Store(math.MaxInt64) // nothing scheduled yet
		c.setEntryLocked(key, e)
		c.log.Debug("entry created", keyFields(key)...)
	}
	e.userSeq++
	e.users[pod.UID] = user{pod: pod, seq: e.userSeq}

	if e.creds.Load() != nil || c.flights[key] != nil || (e.failures > 0 && !e.needsUser) {
		return
	}
	if e.finalErr != nil && c.clock.Since(e.finalAt) < c.opts.FinalErrorTTL {
		return
	}
	c.startLocked(key, pod, context.Background(), true)
}

// Release removes the pod with uid from key's users. When the last user is
// gone the entry is dropped: its timer is stopped, it no longer counts in
// Len, and a fetch still in flight for it stores nothing when it lands.
// Releasing an unknown pod or key does nothing.
func (c *Cache) Release(key Key, uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.lookup(key)
	if e == nil {
		return
	}
	delete(e.users, uid)
	if len(e.users) > 0 {
		return
	}
	c.stopTimerLocked(e)
	c.setEntryLocked(key, nil)
	c.log.Debug("entry dropped", keyFields(key)...)
}

// newestUserLocked returns the most recently acquired user of e: the one most
// likely to still be alive, since its ServiceAccount token is bound to it.
// e has at least one user while it is in the map. Cache.mu must be held.
func (e *entry) newestUserLocked() PodRef {
	var best user
	for _, u := range e.users {
		if u.seq > best.seq {
			best = u
		}
	}
	return best.pod
}

// keyFields describes key for logs; Key holds no secret.
func keyFields(key Key) []zap.Field {
	return []zap.Field{
		zap.String("namespace", key.Namespace),
		zap.String("serviceAccount", key.ServiceAccount),
		zap.String("roleARN", key.RoleARN),
	}
}
