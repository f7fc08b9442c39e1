package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
)

// Sentinel causes of identification failures, for errors.Is.
var (
	// ErrUnknownCaller: no identifiable pod on this node has the address.
	ErrUnknownCaller = errors.New("not a pod on this node")
	// ErrAmbiguousCaller: two live pods claim the address (IP reuse in
	// flight); guessing would hand one pod the other's credentials.
	ErrAmbiguousCaller = errors.New("more than one pod on this node has this address")
)

// PodIndex identifies callers by source address from an informer limited to
// the agent's node. It keeps its own index from address to pods so the hot
// path is one read-locked map lookup with no allocation.
type PodIndex struct {
	node     string
	client   kube.Client
	wait     time.Duration
	logger   *zap.Logger
	metrics  *metrics.Metrics
	informer toolscache.SharedIndexInformer
	done     chan struct{}   // closed when a started informer has stopped
	onChange func(types.UID) // called outside the lock after every change
	lookups  singleflight.Group
	// misses and apiBudget bound what unknown addresses cost the API
	// server: a negative answer is remembered per address, and the lookups
	// that remain share a budget of their own (lookup.go).
	misses    *missCache
	apiBudget *rate.Limiter

	// hot is byIP's addresses that one pod has, copied for requests to
	// read without a lock; nil once a writer has changed byIP, until the
	// next request that needs it copies it again (under the read lock, so
	// no writer runs meanwhile). A burst of informer events costs one copy.
	hot atomic.Pointer[map[netip.Addr]*Pod]

	// mu guards the maps. Writers are informer callbacks; readers are
	// requests. Each *Pod is immutable.
	mu    sync.RWMutex
	byIP  map[netip.Addr][]*Pod // identifiable pods only
	byUID map[types.UID]*Pod    // every pod of the node
	// parked holds the addresses of the node's pods that are not
	// identifiable (hostNetwork, finished, terminating): a request from one
	// is answered from the index, never from an API lookup.
	parked map[netip.Addr][]*Pod
	// waiters holds one entry per unknown address that a request is
	// waiting on right now; the last waiter to leave removes it, so the
	// map never outgrows the requests in flight.
	waiters map[netip.Addr]*waiter
}

// NewPodIndex builds an index of the pods on node. wait is how long a request
// from an unknown address waits for the informer before asking the API server.
// onChange, if set, is called with a pod's UID whenever that pod changes.
func NewPodIndex(client kube.Client, node string, wait time.Duration, logger *zap.Logger, m *metrics.Metrics, onChange func(types.UID)) *PodIndex {
	idx := &PodIndex{
		node: node, client: client, wait: wait, logger: logger.Named("pods"), metrics: m, onChange: onChange,
		byIP: map[netip.Addr][]*Pod{}, byUID: map[types.UID]*Pod{}, parked: map[netip.Addr][]*Pod{},
		waiters: map[netip.Addr]*waiter{}, misses: newMissCache(LookupMissTTL, maxMisses),
		apiBudget: rate.NewLimiter(LookupRate, LookupBurst),
	}
	// No periodic resync: re-handling every pod every few minutes would make
	// each node re-read its ServiceAccounts for nothing (bench/model: the
	// largest API load at 5000 nodes). A changed role is noticed on the
	// request path instead (Agent.resolve).
	onNode := fields.OneTermEqualSelector("spec.nodeName", node).String()
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = onNode
			return client.ListPods(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = onNode
			return client.WatchPods(ctx, o)
		},
	}
	idx.informer = toolscache.NewSharedIndexInformer(lw, &kube.Pod{}, 0, toolscache.Indexers{})
	_ = idx.informer.SetTransform(trimPod) // fails only once the informer runs
	// A missing grant would otherwise only show in klog's output, while the
	// agent stays unready: say in the agent's own log what to grant.
	_ = idx.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *toolscache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			idx.logger.Error("the Kubernetes API server forbids podcreds to list or watch the pods of its node, so it cannot become ready:"+
				" grant list and watch on pods in the agent's ClusterRole, as deploy/rbac.yaml does", zap.String("node", node), zap.Error(err))
			return
		}
		toolscache.DefaultWatchErrorHandler(ctx, r, err)
	})
	_, _ = idx.informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { idx.upsert(obj) },
		UpdateFunc: func(old, obj any) {
			if o, n, ok := podPair(old, obj); ok && o.ResourceVersion == n.ResourceVersion {
				return // a relist that changed nothing
			}
			idx.upsert(obj)
		},
		DeleteFunc: idx.remove,
	})
	return idx
}

// Start runs the informer until ctx ends and waits for its first sync.
func (idx *PodIndex) Start(ctx context.Context) error {
	idx.done = make(chan struct{})
	go func() {
		defer close(idx.done)
		idx.informer.RunWithContext(ctx)
	}()
	if !toolscache.WaitForCacheSync(ctx.Done(), idx.informer.HasSynced) {
		return fmt.Errorf("pod informer for node %s did not sync: %w", idx.node, ctx.Err())
	}
	return nil
}

// Synced reports whether the informer has completed its first list.
func (idx *PodIndex) Synced() bool { return idx.informer.HasSynced() }

// Shutdown waits for the informer's goroutines to stop once the Start
// context has ended. Start and Shutdown are called from one goroutine.
func (idx *PodIndex) Shutdown() {
	if idx.done != nil {
		<-idx.done
	}
}

// UIDs returns the UIDs of every pod on the node the index holds.
func (idx *PodIndex) UIDs() []types.UID {
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	uids := make([]types.UID, 0, len(idx.byUID))
	for uid := range idx.byUID {
		uids = append(uids, uid)
	}
	return uids
}

// Pod returns the pod with uid, or nil.
func (idx *PodIndex) Pod(uid types.UID) *Pod {
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	return idx.byUID[uid]
}

func podPair(old, obj any) (*kube.Pod, *kube.Pod, bool) {
	o, ok1 := old.(*kube.Pod)
	n, ok2 := obj.(*kube.Pod)
	return o, n, ok1 && ok2
}

// PodByName returns the pod namespace/name on the node, or nil. It scans
// every pod: it serves the debug endpoint, not requests.
func (idx *PodIndex) PodByName(namespace, name string) *Pod {
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	for _, p := range idx.byUID {
		if p.Namespace == namespace && p.Name == name {
			return p
		}
	}
	return nil
}

func (idx *PodIndex) upsert(obj any) {
	o, ok := obj.(*kube.Pod)
	if !ok {
		return
	}
	p := podFromObject(o)
	idx.mu.Lock()
	idx.hot.Store(nil)
	if old := idx.byUID[p.UID]; old != nil {
		idx.unindexLocked(old)
	}
	idx.byUID[p.UID] = p
	for _, ip := range p.IPs {
		if !p.Identifiable() {
			idx.parked[ip] = append(idx.parked[ip], p)
			continue
		}
		idx.byIP[ip] = append(idx.byIP[ip], p)
		idx.misses.forget(ip)
		if w := idx.waiters[ip]; w != nil {
			close(w.wake)
			delete(idx.waiters, ip)
		}
	}
	idx.metrics.PodsIndexed.Set(float64(len(idx.byUID)))
	idx.mu.Unlock()
	if idx.onChange != nil {
		idx.onChange(p.UID)
	}
}

func (idx *PodIndex) remove(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	o, ok := obj.(*kube.Pod)
	if !ok {
		return
	}
	idx.mu.Lock()
	idx.hot.Store(nil)
	if old := idx.byUID[o.UID]; old != nil {
		idx.unindexLocked(old)
		delete(idx.byUID, o.UID)
	}
	idx.metrics.PodsIndexed.Set(float64(len(idx.byUID)))
	idx.mu.Unlock()
	if idx.onChange != nil {
		idx.onChange(o.UID)
	}
}

// unindexLocked removes p from byIP and parked. The slices are rebuilt,
// never edited in place, because readers may hold the old slice.
func (idx *PodIndex) unindexLocked(p *Pod) {
	for _, ip := range p.IPs {
		without(idx.byIP, ip, p.UID)
		without(idx.parked, ip, p.UID)
	}
}

// Holds reports whether any pod on this node, in any state, has address ip:
// such an address is a pod's, never the node's own.
func (idx *PodIndex) Holds(ip netip.Addr) bool {
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	if len(idx.byIP[ip]) > 0 {
		return true
	}
	for _, p := range idx.byUID {
		if p.HostNetwork {
			continue
		}
		for _, have := range p.IPs {
			if have == ip {
				return true
			}
		}
	}
	return false
}

func without(m map[netip.Addr][]*Pod, ip netip.Addr, uid types.UID) {
	pods, ok := m[ip]
	if !ok {
		return
	}
	kept := make([]*Pod, 0, len(pods))
	for _, q := range pods {
		if q.UID != uid {
			kept = append(kept, q)
		}
	}
	if len(kept) == 0 {
		delete(m, ip)
	} else {
		m[ip] = kept
	}
}

// unknown is the answer for an address no identifiable pod of this node has.
// It lists what commonly causes that, since the caller usually is a pod and
// cannot see why it is a stranger.
func unknown(ip netip.Addr, node string) error {
	return failure.Final(http.StatusNotFound, "PodNotFound", ip.String()+" is not a pod on this node ("+node+
		") that can be identified by its address. Common causes: a hostNetwork pod that sent no projected token"+
		" (set AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE); SNAT, a proxy or a service-mesh sidecar between the pod and"+
		" the agent, so the request comes from another address; a pod on another node; a pod that has finished", ErrUnknownCaller)
}

func ambiguous(ip netip.Addr, pods []*Pod) error {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.String()
	}
	return failure.Retriable("AmbiguousCaller", fmt.Sprintf("%d pods on this node have address %s (%v); refusing to guess", len(pods), ip, names), 0, ErrAmbiguousCaller)
}
