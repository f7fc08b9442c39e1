package agent

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/podcreds/podcreds/failure"
)

// What an address that no pod of the index has may cost. A process on the
// node can ask from any address it likes, and a pod that is being deleted
// keeps asking from its own; neither may turn requests into API load or
// memory that grows with them.
const (
	// LookupMissTTL is how long the API server's "no such pod" is remembered for
	// an address: a request from it in that time is answered at once.
	LookupMissTTL = 5 * time.Second
	// maxMisses bounds the remembered answers; past it, expired ones are
	// swept and, if none has expired, the newest is not remembered (the
	// lookup budget still bounds what that costs).
	maxMisses = 4096
	// LookupRate and LookupBurst are the API lookups (one LIST each) that
	// unknown addresses may cause, per second and in a burst: a budget of
	// their own, so they never eat into the TokenRequests of known pods.
	LookupRate  = 5
	LookupBurst = 10
)

// waiter is what requests from one unknown address wait on. wake closes when
// a pod with the address is indexed; n counts the requests holding it.
type waiter struct {
	wake chan struct{}
	n    int // guarded by PodIndex.mu
}

// indexed answers from the index alone; found is false when no identifiable
// pod has ip. It waits for nothing, and on a miss with register set returns
// the waiter to wait on, which the caller must release.
func (idx *PodIndex) indexed(ip netip.Addr, register bool) (p *Pod, found bool, w *waiter, err error) {
	if hot := idx.hot.Load(); hot != nil {
		if p := (*hot)[ip]; p != nil {
			return p, true, nil, nil // the hot path: no lock
		}
	}
	idx.mu.RLock()
	pods := idx.byIP[ip]
	idx.copyHotLocked()
	idx.mu.RUnlock()
	switch len(pods) {
	case 1:
		return pods[0], true, nil, nil
	case 0:
	default:
		return nil, true, nil, ambiguous(ip, pods)
	}
	if !register {
		return nil, false, nil, nil
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if pods := idx.byIP[ip]; len(pods) > 0 { // indexed since the read lock
		if len(pods) > 1 {
			return nil, true, nil, ambiguous(ip, pods)
		}
		return pods[0], true, nil, nil
	}
	w = idx.waiters[ip]
	if w == nil {
		w = &waiter{wake: make(chan struct{})}
		idx.waiters[ip] = w
	}
	w.n++
	return nil, false, w, nil
}

// copyHotLocked copies byIP's single-pod addresses into hot if a writer has
// dropped it. It runs under the read lock: no writer can change byIP
// between the copy and its store, and a writer that runs after stores nil
// again.
func (idx *PodIndex) copyHotLocked() {
	if idx.hot.Load() != nil {
		return
	}
	hot := make(map[netip.Addr]*Pod, len(idx.byIP))
	for ip, pods := range idx.byIP {
		if len(pods) == 1 {
			hot[ip] = pods[0]
		}
	}
	idx.hot.CompareAndSwap(nil, &hot)
}

// release ends one request's wait on w; the last one out removes it (unless
// an indexed pod has removed it already and a newer waiter took its place).
func (idx *PodIndex) release(ip netip.Addr, w *waiter) {
	idx.mu.Lock()
	w.n--
	if w.n == 0 && idx.waiters[ip] == w {
		delete(idx.waiters, ip)
	}
	idx.mu.Unlock()
}

// podMemo is the pod an address had in the index's lock-free copy hot: it
// still has while the index holds that copy (a writer drops the copy).
type podMemo struct {
	hot *map[netip.Addr]*Pod
	pod *Pod
}

// lookupFrom is Lookup for a request on a connection that keeps what its
// address's last lookup found in memo (nil: none): while the index has not
// changed since, that pod is the answer, with no map read.
func (idx *PodIndex) lookupFrom(ctx context.Context, memo *atomic.Pointer[podMemo], ip netip.Addr) (*Pod, error) {
	hot := idx.hot.Load()
	if hot != nil && memo != nil {
		if m := memo.Load(); m != nil && m.hot == hot {
			return m.pod, nil
		}
	}
	if hot != nil {
		if p := (*hot)[ip]; p != nil {
			if memo != nil {
				memo.Store(&podMemo{hot: hot, pod: p})
			}
			return p, nil
		}
	}
	return idx.Lookup(ctx, ip)
}

// Lookup returns the one identifiable pod on this node with address ip. An
// unknown address waits, woken by the informer, up to the configured time
// (the pod may have started a moment ago and its status not reached us yet).
// Then an address the index holds for a pod that is not identifiable
// (hostNetwork, finished, terminating) is refused from the index; any other
// is looked up on the API server once, within the lookup budget and unless
// the API server said "no such pod" for it a moment ago.
func (idx *PodIndex) Lookup(ctx context.Context, ip netip.Addr) (*Pod, error) {
	if p, found, _, err := idx.indexed(ip, false); found {
		return p, err
	}
	if err := idx.parkedRefusal(ip, true); err != nil {
		return nil, err // the node's own address: no pod will ever have it
	}
	deadline := time.NewTimer(idx.wait)
	defer deadline.Stop()
	for {
		p, found, w, err := idx.indexed(ip, true)
		if found {
			return p, err
		}
		select {
		case <-w.wake:
			idx.release(ip, w)
			continue
		case <-ctx.Done():
			idx.release(ip, w)
			return nil, failure.Retriable("RequestCancelled", "request ended while identifying the caller", 0, ctx.Err())
		case <-deadline.C:
			idx.release(ip, w)
		}
		break
	}
	if err := idx.parkedRefusal(ip, false); err != nil {
		return nil, err
	}
	if idx.misses.has(ip, time.Now()) {
		return nil, unknown(ip, idx.node)
	}
	if !idx.apiBudget.Allow() {
		return nil, errLookupBudget
	}
	return idx.lookupAPI(ctx, ip)
}

var errLookupBudget = failure.Retriable("PodLookupThrottled",
	"the caller's address is not in this node's pod index yet and the agent's API lookups for unknown addresses are used up; retry shortly", 0, ErrUnknownCaller)

// parkedRefusal says why an address that the index holds only for pods that
// are not identifiable is not served, or returns nil if it holds none. With
// hostOnly it answers only for addresses held by hostNetwork pods alone.
func (idx *PodIndex) parkedRefusal(ip netip.Addr, hostOnly bool) error {
	idx.mu.RLock()
	pods := idx.parked[ip]
	idx.mu.RUnlock()
	if len(pods) == 0 {
		return nil
	}
	p := pods[0]
	for _, q := range pods {
		if !q.HostNetwork {
			if hostOnly {
				return nil
			}
			p = q
		}
	}
	var why string
	switch {
	case p.HostNetwork:
		why = " is the node's own address (hostNetwork pod " + p.String() + "): a hostNetwork pod is served only on its ServiceAccount token in Authorization (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)"
	case p.Deleting:
		why = " belongs to pod " + p.String() + ", which is being deleted: a terminating pod is not served, as its address may already be another pod's"
	default:
		why = " belongs to pod " + p.String() + ", which has finished (" + string(p.Phase) + "): its address may already be another pod's"
	}
	return failure.Final(http.StatusNotFound, "PodNotFound", ip.String()+why, ErrUnknownCaller)
}

// lookupAPI asks the API server for pods on this node with ip; concurrent
// requests from one address share a single call, and a "no such pod" is
// remembered for LookupMissTTL.
func (idx *PodIndex) lookupAPI(ctx context.Context, ip netip.Addr) (*Pod, error) {
	ch := idx.lookups.DoChan(ip.String(), func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		sel := fields.AndSelectors(
			fields.OneTermEqualSelector("spec.nodeName", idx.node),
			fields.OneTermEqualSelector("status.podIP", ip.String()),
		).String()
		list, err := idx.client.ListPods(cctx, metav1.ListOptions{FieldSelector: sel})
		if apierrors.IsForbidden(err) {
			return nil, failure.Forbidden("list", "pods", "pods on node "+idx.node+" at "+ip.String(), err)
		}
		if err != nil {
			return nil, failure.Retriable("PodLookupFailed", "cannot reach the Kubernetes API to identify the caller", 0, err)
		}
		var live []*Pod
		for i := range list.Items {
			if p := podFromObject(&list.Items[i]); p.Identifiable() {
				live = append(live, p)
			}
		}
		switch len(live) {
		case 0:
			idx.misses.add(ip, time.Now())
			return nil, unknown(ip, idx.node)
		case 1:
			return live[0], nil
		default:
			return nil, ambiguous(ip, live)
		}
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Pod), nil
	case <-ctx.Done():
		return nil, failure.Retriable("RequestCancelled", "request ended while identifying the caller", 0, ctx.Err())
	}
}

// missCache remembers, per address, until when the API server's "no such
// pod" stands. It holds at most max entries.
type missCache struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	until map[netip.Addr]time.Time
}

func newMissCache(ttl time.Duration, max int) *missCache {
	return &missCache{ttl: ttl, max: max, until: map[netip.Addr]time.Time{}}
}

func (m *missCache) has(ip netip.Addr, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.until[ip]
	if ok && !now.Before(t) {
		delete(m.until, ip)
		return false
	}
	return ok
}

func (m *missCache) add(ip netip.Addr, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.until) >= m.max {
		for k, t := range m.until {
			if !now.Before(t) {
				delete(m.until, k)
			}
		}
		if len(m.until) >= m.max {
			return
		}
	}
	m.until[ip] = now.Add(m.ttl)
}

// forget drops ip's remembered miss: a pod with that address is indexed.
func (m *missCache) forget(ip netip.Addr) {
	m.mu.Lock()
	delete(m.until, ip)
	m.mu.Unlock()
}

func (m *missCache) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.until)
}
