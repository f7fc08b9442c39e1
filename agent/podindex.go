package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
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

	// mu guards the maps. Writers are informer callbacks; readers are
	// requests. Each *Pod is immutable.
	mu      sync.RWMutex
	byIP    map[netip.Addr][]*Pod // identifiable pods only
	byUID   map[types.UID]*Pod    // every pod of the node
	waiters map[netip.Addr]chan struct{}
}

// NewPodIndex builds an index of the pods on node. wait is how long a request
// from an unknown address waits for the informer before asking the API server.
// onChange, if set, is called with a pod's UID whenever that pod changes.
func NewPodIndex(client kube.Client, node string, wait time.Duration, logger *zap.Logger, m *metrics.Metrics, onChange func(types.UID)) *PodIndex {
	idx := &PodIndex{
		node: node, client: client, wait: wait, logger: logger.Named("pods"), metrics: m, onChange: onChange,
		byIP: map[netip.Addr][]*Pod{}, byUID: map[types.UID]*Pod{}, waiters: map[netip.Addr]chan struct{}{},
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
	if old := idx.byUID[p.UID]; old != nil {
		idx.unindexLocked(old)
	}
	idx.byUID[p.UID] = p
	if p.Identifiable() {
		for _, ip := range p.IPs {
			idx.byIP[ip] = append(idx.byIP[ip], p)
			if ch := idx.waiters[ip]; ch != nil {
				close(ch)
				delete(idx.waiters, ip)
			}
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

// unindexLocked removes p from byIP. The slices are rebuilt, never edited in
// place, because readers may hold the old slice.
func (idx *PodIndex) unindexLocked(p *Pod) {
	for _, ip := range p.IPs {
		pods := idx.byIP[ip]
		kept := make([]*Pod, 0, len(pods))
		for _, q := range pods {
			if q.UID != p.UID {
				kept = append(kept, q)
			}
		}
		if len(kept) == 0 {
			delete(idx.byIP, ip)
		} else {
			idx.byIP[ip] = kept
		}
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

// indexed answers from the index alone; found is false when no identifiable
// pod has ip. It waits for nothing, and on a waiter miss returns the channel
// that closes when a pod with ip is indexed.
func (idx *PodIndex) indexed(ip netip.Addr, register bool) (p *Pod, found bool, wake <-chan struct{}, err error) {
	idx.mu.RLock()
	pods := idx.byIP[ip]
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
	ch := idx.waiters[ip]
	if ch == nil {
		ch = make(chan struct{})
		idx.waiters[ip] = ch
	}
	return nil, false, ch, nil
}

// Lookup returns the one identifiable pod on this node with address ip. An
// unknown address waits, woken by the informer, up to the configured time
// (the pod may have started a moment ago and its status not reached us yet),
// then asks the API server once, then answers ErrUnknownCaller.
func (idx *PodIndex) Lookup(ctx context.Context, ip netip.Addr) (*Pod, error) {
	if p, found, _, err := idx.indexed(ip, false); found {
		return p, err
	}
	deadline := time.NewTimer(idx.wait)
	defer deadline.Stop()
	for {
		p, found, wake, err := idx.indexed(ip, true)
		if found {
			return p, err
		}
		select {
		case <-wake:
			continue
		case <-ctx.Done():
			return nil, failure.Retriable("RequestCancelled", "request ended while identifying the caller", 0, ctx.Err())
		case <-deadline.C:
		}
		return idx.lookupAPI(ctx, ip)
	}
}

// lookupAPI asks the API server for pods on this node with ip; concurrent
// requests from one address share a single call.
func (idx *PodIndex) lookupAPI(ctx context.Context, ip netip.Addr) (*Pod, error) {
	ch := idx.lookups.DoChan(ip.String(), func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		sel := fields.AndSelectors(
			fields.OneTermEqualSelector("spec.nodeName", idx.node),
			fields.OneTermEqualSelector("status.podIP", ip.String()),
		).String()
		list, err := idx.client.ListPods(cctx, metav1.ListOptions{FieldSelector: sel})
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
			return nil, unknown(ip)
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

func unknown(ip netip.Addr) error {
	return failure.Final(http.StatusNotFound, "PodNotFound", ip.String()+" is not a pod on this node", ErrUnknownCaller)
}

func ambiguous(ip netip.Addr, pods []*Pod) error {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.String()
	}
	return failure.Retriable("AmbiguousCaller", fmt.Sprintf("%d pods on this node have address %s (%v); refusing to guess", len(pods), ip, names), 0, ErrAmbiguousCaller)
}
