package agent

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
)

// TestUnknownAddressesLeaveNoMemoryBehind: a process on the node can ask
// from every address of 127.0.0.0/8 in turn. What the index keeps for the
// requests waiting on unknown addresses must go with them, whether they end
// at the deadline or are cancelled, and what it remembers of the API
// server's answers stays within its bound.
func TestUnknownAddressesLeaveNoMemoryBehind(t *testing.T) {
	idx := NewPodIndex(kubeclientset.Wrap(fake.NewClientset()), "node-a", 5*time.Millisecond, zap.NewNop(), metrics.New(prometheus.NewRegistry()), nil)
	idx.misses = newMissCache(LookupMissTTL, 64) // a small bound, to see it hold
	const n = 3000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ip := netip.AddrFrom4([4]byte{127, 9, byte(i >> 8), byte(i)})
			ctx := context.Background()
			if i%3 == 0 { // some callers hang up while they wait
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
			}
			if _, err := idx.Lookup(ctx, ip); err == nil {
				t.Errorf("%s: an unknown address was identified", ip)
			}
		})
	}
	wg.Wait()
	idx.mu.RLock()
	waiting := len(idx.waiters)
	idx.mu.RUnlock()
	if waiting != 0 {
		t.Errorf("%d waiters left after every request from %d unknown addresses ended, want 0", waiting, n)
	}
	if got := idx.misses.len(); got > 64 {
		t.Errorf("%d remembered misses, want at most the bound of 64", got)
	}
}

// TestWaitersAreWokenAndFreedWhenThePodAppears: the waiter of an address
// whose pod is indexed is woken and gone afterwards.
func TestWaitersAreWokenAndFreedWhenThePodAppears(t *testing.T) {
	idx := NewPodIndex(kubeclientset.Wrap(fake.NewClientset()), "node-a", 10*time.Second, zap.NewNop(), metrics.New(prometheus.NewRegistry()), nil)
	ip := netip.MustParseAddr("10.0.0.9")
	got := make(chan error, 4)
	for range 4 {
		go func() { _, err := idx.Lookup(context.Background(), ip); got <- err }()
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		idx.mu.RLock()
		w := idx.waiters[ip]
		ready := w != nil && w.n == 4
		idx.mu.RUnlock()
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the four requests never waited on the address")
		}
	}
	idx.upsert(runningPod("late", "uid-late", "10.0.0.9"))
	for range 4 {
		if err := <-got; err != nil {
			t.Fatalf("a waiting request was not served once its pod appeared: %v", err)
		}
	}
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	if len(idx.waiters) != 0 {
		t.Errorf("%d waiters left, want 0", len(idx.waiters))
	}
}

// TestAddressesOfPodsNotServedAreAnsweredFromTheIndex: a terminating,
// finished or hostNetwork pod's address is refused with the reason, without
// asking the API server (unit-level; test/integration counts the LISTs on a
// real API server).
func TestAddressesOfPodsNotServedAreAnsweredFromTheIndex(t *testing.T) {
	client := &listCounter{Client: kubeclientset.Wrap(fake.NewClientset())}
	idx := NewPodIndex(client, "node-a", time.Millisecond, zap.NewNop(), metrics.New(prometheus.NewRegistry()), nil)
	deleting := runningPod("going", "uid-1", "10.0.0.1")
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	finished := runningPod("done", "uid-2", "10.0.0.2")
	finished.Status.Phase = kube.PodSucceeded
	host := runningPod("daemon", "uid-3", "192.0.2.10")
	host.Spec.HostNetwork = true
	for _, p := range []*kube.Pod{deleting, finished, host} {
		idx.upsert(p)
	}
	for ip, want := range map[string]string{
		"10.0.0.1":   "ns/going, which is being deleted",
		"10.0.0.2":   "ns/done, which has finished (Succeeded)",
		"192.0.2.10": "the node's own address (hostNetwork pod ns/daemon)",
	} {
		for range 20 {
			_, err := idx.Lookup(context.Background(), netip.MustParseAddr(ip))
			var fe *failure.Error
			if !errors.As(err, &fe) || fe.Status != 404 || !strings.Contains(fe.Message, want) || !errors.Is(err, ErrUnknownCaller) {
				t.Fatalf("%s: %v, want a 404 saying %q", ip, err, want)
			}
		}
	}
	if n := client.lists(); n != 0 {
		t.Errorf("%d LISTs for addresses the index holds, want 0", n)
	}
}

func runningPod(name, uid, ip string) *kube.Pod {
	p := &kube.Pod{
		Spec:   kube.PodSpec{NodeName: "node-a", ServiceAccountName: "app"},
		Status: kube.PodStatus{Phase: kube.PodRunning, PodIP: ip, PodIPs: []kube.PodIP{{IP: ip}}},
	}
	p.Namespace, p.Name, p.UID = "ns", name, types.UID(uid)
	return p
}

// listCounter counts the pod LISTs made through it.
type listCounter struct {
	kube.Client
	mu sync.Mutex
	n  int
}

func (c *listCounter) ListPods(ctx context.Context, o metav1.ListOptions) (*kube.PodList, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Client.ListPods(ctx, o)
}

func (c *listCounter) lists() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// addressChanges are what the informer does to one address (10.0.0.1) over
// a pod's life and its address's reuse, in order. After each, a reader of
// the index's lock-free copy must answer what the index holds now: want is
// the answer named by a pod's name, or by how the reader refuses.
var addressChanges = []struct {
	step   string
	change func(*PodIndex)
	// indexed is PodIndex.indexed's answer ("ambiguous", "none" or a
	// name); lookup is lookupFrom's ("refused" or a name).
	indexed, lookup string
}{
	{"a running pod", func(idx *PodIndex) { idx.upsert(runningPod("old", "uid-1", "10.0.0.1")) }, "old", "old"},
	{"its address reused before it is gone", func(idx *PodIndex) { idx.upsert(runningPod("new", "uid-2", "10.0.0.1")) }, "ambiguous", "refused"},
	{"the old pod terminating", func(idx *PodIndex) {
		deleting := runningPod("old", "uid-1", "10.0.0.1")
		now := metav1.Now()
		deleting.DeletionTimestamp = &now
		idx.upsert(deleting)
	}, "new", "new"},
	{"the new pod deleted", func(idx *PodIndex) { idx.remove(runningPod("new", "uid-2", "10.0.0.1")) }, "none", "refused"},
	{"a third pod", func(idx *PodIndex) { idx.upsert(runningPod("third", "uid-3", "10.0.0.1")) }, "third", "third"},
}

// Requests read the index's addresses from a copy that takes no lock. Every
// change the informer makes must reach the next request: a pod that starts
// terminating, is deleted, or comes to share its address with another (IP
// reuse) is never served from the copy taken before.
func TestTheLockFreeCopyOfTheIndexFollowsEveryChange(t *testing.T) {
	idx := NewPodIndex(kubeclientset.Wrap(fake.NewClientset()), "node-a", time.Millisecond, zap.NewNop(), metrics.New(prometheus.NewRegistry()), nil)
	ip := netip.MustParseAddr("10.0.0.1")
	for _, c := range addressChanges {
		c.change(idx)
		for range 3 { // the first read may copy; the rest read the copy
			p, found, _, err := idx.indexed(ip, false)
			got := "none"
			switch {
			case err != nil:
				got = "ambiguous"
			case found:
				got = p.Name
			}
			if got != c.indexed {
				t.Fatalf("%s: the index answers %s, want %s", c.step, got, c.indexed)
			}
		}
	}
}

// TestAConnectionsKeptPodFollowsTheIndex checks the pod a connection keeps
// for its next request (lookupFrom): it is answered only while the index is
// unchanged, so a reused, terminating or deleted address is seen at once by
// a connection that was open before.
func TestAConnectionsKeptPodFollowsTheIndex(t *testing.T) {
	idx := NewPodIndex(kubeclientset.Wrap(fake.NewClientset()), "node-a", time.Millisecond, zap.NewNop(), metrics.New(prometheus.NewRegistry()), nil)
	ip := netip.MustParseAddr("10.0.0.1")
	var memo atomic.Pointer[podMemo]
	for _, c := range addressChanges {
		c.change(idx)
		for range 3 { // the first may look up and keep; the rest read what was kept
			p, err := idx.lookupFrom(t.Context(), &memo, ip)
			got := "refused"
			if err == nil {
				got = p.Name
			}
			if got != c.lookup {
				t.Fatalf("%s: answered %s, want %s", c.step, got, c.lookup)
			}
		}
		if memo.Load() == nil {
			t.Fatalf("%s: nothing kept for the connection", c.step)
		}
	}
}
