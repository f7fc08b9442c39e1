// Package cache holds the node's temporary AWS credentials, one entry per
// Key, and keeps them fresh in the background so that a pod's request is
// almost always answered from memory.
//
// # Life of an entry
//
// Entries are created by use: the agent calls Acquire when a pod with a role
// appears on the node and Release when it goes away. The first Acquire of a
// key creates its entry and starts a prefetch; the last Release drops the
// entry, stops its refresh timer, and any fetch still in flight for it finds
// the entry gone and stores nothing. Get never creates an entry (it has no
// matching Release, so an entry it created could never be dropped).
//
// # Refresh policy
//
// After every successful fetch the entry schedules a refresh on the injected
// clock. With lifetime L (Expiration minus the time the credentials were
// stored) the refresh runs after
//
//	min(RefreshFraction·L, L − RefreshBefore) − U[0, RefreshJitter·L)
//
// but never before a quarter of L, so short-lived credentials are not
// refreshed in a hot loop. With the defaults (2/3, 20 min, 0.1) one-hour
// credentials are refreshed 34–40 minutes after they were obtained, with
// 20–26 minutes left: every SDK's refresh window (botocore's 15-minute
// advisory one being the widest for one-hour credentials) is still ahead of
// whatever a client is handed, so clients refresh on their own schedule
// instead of all at once, and an STS outage of 20 minutes goes unnoticed.
// Refreshing earlier buys a longer outage tolerance with more STS calls:
// at half the lifetime, 30 minutes for 1.4× the calls.
//
// A retriable failure keeps the current credentials, which are served until
// they come within SafetyMargin of expiry, and retries with exponential
// backoff and equal jitter: attempt n waits between b/2 and b, where
// b = min(InitialBackoff·2^(n−1), MaxBackoff) (by default 0.5–1 s, 1–2 s,
// 2–4 s, … up to 60–120 s). A final failure (access denied, invalid token)
// drops the credentials at once and stops refreshing: Get answers with that
// error for FinalErrorTTL and then tries again. The entry itself stays until
// its last user is released.
//
// A failure caused by the pod a fetch was bound to (ErrPodGone: deleted, or
// replaced under its name) is no failure of the key: that pod is dropped from
// the users and the fetch is tried again at once as the newest remaining
// user, in the same flight, so one dead pod never costs its siblings their
// credentials. With nobody left to act for it is retried like a retriable
// failure, and the next pod to arrive fetches at once.
//
// Credentials that are expired or within SafetyMargin of expiry are never
// served: Get then fetches on the request path, and reports the fetch's
// error if that fails too. Expiry is judged by the wall clock against
// Expiration, never by a monotonic reading, which stops while a host or VM
// is suspended. Refresh timers do run on the monotonic clock, so each entry
// also keeps its refresh time on the wall clock, and a hit past it starts the
// refresh at once (after a resume, the first request does).
//
// # Concurrency
//
// A hit takes no lock: one atomic load for the (copy-on-write) map of
// entries, one for the credentials. It allocates nothing. Concurrent misses of one key share one
// fetch (the dedup pattern of x/sync/singleflight, kept in the cache's own
// map so the result is stored in the same critical section that ends the
// flight, leaving no window for a second fetch). A caller that gives up
// leaves without cancelling the shared fetch, which runs under
// context.WithoutCancel plus FetchTimeout.
package cache
