package cache

import (
	"math"
	"time"

	"github.com/podcreds/podcreds/failure"
)

// State is what the cache holds for one key, without a secret: what the
// agent's debug endpoint and `podcreds explain --agent` show.
type State struct {
	// Cached is true while the entry holds credentials; Issued and
	// Expiration are theirs.
	Cached             bool
	Issued, Expiration time.Time
	// NextRefresh is when the next refresh (or retry) is due; zero if none.
	NextRefresh time.Time
	// Fetching is true while a fetch is in flight.
	Fetching bool
	// Users is how many pods on the node use the entry.
	Users int
	// LastErrorCode and LastError are the last failure's code and safe
	// message (the final one while it is answered, else the last
	// retriable one); empty after a success. Failures counts consecutive
	// retriable ones.
	LastErrorCode, LastError string
	Failures                 int
}

// State returns key's entry's state, and false if the cache has no entry
// for key.
func (c *Cache) State(key Key) (State, bool) {
	e := c.lookup(key)
	if e == nil {
		return State{}, false
	}
	var s State
	if cr := e.creds.Load(); cr != nil {
		s.Cached, s.Issued, s.Expiration = true, cr.Issued, cr.Expiration
	}
	if at := e.refreshAt.Load(); at != math.MaxInt64 && at != 0 {
		s.NextRefresh = time.Unix(0, at)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, s.Fetching = c.flights[key]
	s.Users, s.Failures = len(e.users), e.failures
	if e.retryErr != nil && !e.retryAt.IsZero() {
		s.NextRefresh = e.retryAt
	}
	last := e.retryErr
	if e.finalErr != nil {
		last = e.finalErr
	}
	if last != nil {
		fe := failure.From(last)
		s.LastErrorCode, s.LastError = fe.Code, fe.Message
	}
	return s, true
}
