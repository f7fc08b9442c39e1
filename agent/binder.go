package agent

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/roles"
)

// CredentialCache is what the agent needs of the credential cache.
type CredentialCache interface {
	// Ref returns key with its entry, for GetRefAt.
	Ref(key cache.Key) cache.Ref
	// GetRefAt answers a request that read the real clock at now.
	GetRefAt(ctx context.Context, ref cache.Ref, pod cache.PodRef, now time.Time) (*cache.Credentials, error)
	Acquire(key cache.Key, pod cache.PodRef)
	Release(key cache.Key, uid types.UID)
}

// TokenDropper forgets the ServiceAccount tokens bound to a deleted pod.
type TokenDropper interface {
	DropPod(uid types.UID)
}

// binder keeps the cache's users in step with the pods on the node: a pod
// with a role becomes a user of its key as soon as it is scheduled here (so
// the cache prefetches before the pod's first request), and stops being one when
// it finishes, terminates or is deleted (so nobody refreshes credentials for
// a pod that is gone).
//
// It is level-triggered: events only enqueue a pod's UID, and a worker
// compares what the pod is now with what it holds. Out-of-order or repeated
// events cannot leave a stale user behind.
type binder struct {
	index  *PodIndex
	roles  *roles.RoleResolver
	cache  CredentialCache
	tokens TokenDropper
	logger *zap.Logger
	queue  workqueue.TypedRateLimitingInterface[types.UID]

	mu    sync.RWMutex // guards bound and seen; bound is read on the request path
	bound map[types.UID]cache.Key
	// seen holds the pods synced at least once, whatever the outcome:
	// warm-up waits for every pod to be seen.
	seen map[types.UID]struct{}
}

func newBinder(resolver *roles.RoleResolver, c CredentialCache, tokens TokenDropper, logger *zap.Logger) *binder {
	return &binder{
		roles: resolver, cache: c, tokens: tokens, logger: logger.Named("binder"),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[types.UID](),
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Name: "podcreds_binder"}),
		bound: map[types.UID]cache.Key{}, seen: map[types.UID]struct{}{},
	}
}

// enqueue is the pod index's change hook.
func (b *binder) enqueue(uid types.UID) { b.queue.Add(uid) }

// run processes the queue with n workers until ctx ends.
func (b *binder) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for b.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	b.queue.ShutDown()
	wg.Wait()
}

func (b *binder) next(ctx context.Context) bool {
	uid, quit := b.queue.Get()
	if quit {
		return false
	}
	defer b.queue.Done(uid)
	if err := b.sync(ctx, uid); err != nil && failure.IsRetriable(err) {
		b.queue.AddRateLimited(uid)
		return true
	}
	b.queue.Forget(uid)
	return true
}

// sync makes the cache's view of one pod match the index.
func (b *binder) sync(ctx context.Context, uid types.UID) error {
	p := b.index.Pod(uid)
	b.mu.Lock()
	held, holding := b.bound[uid]
	b.mu.Unlock()

	var want cache.Key
	var err error
	if p != nil && p.WillRun() {
		want, err = b.roles.Resolve(ctx, p.Subject())
	}
	wanted := p != nil && p.WillRun() && err == nil
	if holding && (!wanted || held != want) {
		b.cache.Release(held, uid)
		b.mu.Lock()
		delete(b.bound, uid)
		b.mu.Unlock()
	}
	if p == nil && b.tokens != nil {
		b.tokens.DropPod(uid)
	}
	if wanted && (!holding || held != want) {
		b.cache.Acquire(want, p.Ref())
		b.mu.Lock()
		b.bound[uid] = want
		b.mu.Unlock()
	}
	b.mu.Lock()
	if p == nil {
		delete(b.seen, uid)
	} else {
		b.seen[uid] = struct{}{}
	}
	b.mu.Unlock()
	if err != nil && failure.IsRetriable(err) {
		b.logger.Debug("cannot resolve role yet; will retry", zap.Stringer("pod", p), zap.Error(err))
	}
	return err
}

// holds reports whether the pod is bound to key.
func (b *binder) holds(uid types.UID, key cache.Key) bool {
	b.mu.RLock()
	held, ok := b.bound[uid]
	b.mu.RUnlock()
	return ok && held == key
}
