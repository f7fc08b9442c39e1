package issuer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/podcreds/podcreds/metrics"
)

// Event reasons the controller records (on its Lease).
const (
	ReasonPublishFailed = "PublishFailed"
	ReasonPublished     = "Published"
)

// ControllerOptions configures a Controller.
type ControllerOptions struct {
	Publisher *Publisher
	// Interval between syncs; a value on Trigger syncs at once.
	Interval time.Duration
	Trigger  <-chan struct{}

	// Leases holds the Lease named LeaseNamespace/LeaseName that replicas
	// compete for; Identity names this replica in it.
	Leases                       coordinationv1client.LeasesGetter
	LeaseNamespace, LeaseName    string
	Identity                     string
	LeaseDuration, RenewDeadline time.Duration
	RetryPeriod                  time.Duration
	Recorder                     events.EventRecorder // may be nil
	Logger                       *zap.Logger
	Metrics                      *metrics.Issuer // may be nil
}

// Controller publishes while it holds the Lease. Only the leader syncs, so
// replicas never write the target at the same time (a replica that loses
// the Lease stops at once: its sync context is cancelled).
type Controller struct {
	o       ControllerOptions
	leading atomic.Bool
	// lastErr is the leader's last sync error (nil after a success).
	lastErr atomic.Pointer[error]
}

// NewController checks o.
func NewController(o ControllerOptions) (*Controller, error) {
	if o.Publisher == nil || o.Leases == nil {
		return nil, errors.New("controller needs a publisher and a Lease client")
	}
	if o.Interval <= 0 {
		return nil, fmt.Errorf("sync interval %s must be positive", o.Interval)
	}
	if o.LeaseNamespace == "" || o.LeaseName == "" || o.Identity == "" {
		return nil, errors.New("controller needs a Lease namespace, name and identity")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Controller{o: o}, nil
}

// Leading reports whether this replica holds the Lease.
func (c *Controller) Leading() bool { return c.leading.Load() }

// Ready is /readyz: a standby replica is ready (it has nothing to do until
// it leads); the leader is ready once its last sync succeeded.
func (c *Controller) Ready() error {
	if !c.leading.Load() {
		return nil
	}
	p := c.lastErr.Load()
	if p == nil {
		return errors.New("leading; the first sync has not finished")
	}
	return *p
}

// Run campaigns for the Lease until ctx ends, publishing while it leads; it
// releases the Lease on the way out so a standby takes over at once.
func (c *Controller) Run(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: c.o.LeaseNamespace, Name: c.o.LeaseName},
		Client:     c.o.Leases,
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.o.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   c.o.LeaseDuration,
			RenewDeadline:   c.o.RenewDeadline,
			RetryPeriod:     c.o.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            c.o.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: c.lead,
				OnStoppedLeading: func() {
					c.leading.Store(false)
					c.lastErr.Store(nil)
					if c.o.Metrics != nil {
						c.o.Metrics.IsLeader.Set(0)
					}
					c.o.Logger.Info("stopped leading", zap.String("identity", c.o.Identity))
				},
				OnNewLeader: func(id string) {
					c.o.Logger.Info("leader", zap.String("identity", id), zap.Bool("self", id == c.o.Identity))
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		// Run returns when the Lease is lost or ctx ends; campaign again
		// after a lost Lease.
		le.Run(ctx)
	}
	return nil
}

// lead syncs at every interval and trigger until ctx (the leadership) ends.
func (c *Controller) lead(ctx context.Context) {
	c.leading.Store(true)
	if c.o.Metrics != nil {
		c.o.Metrics.IsLeader.Set(1)
	}
	c.o.Logger.Info("started leading; publishing", zap.String("identity", c.o.Identity), zap.Duration("interval", c.o.Interval))
	ref := &corev1.ObjectReference{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: c.o.LeaseNamespace, Name: c.o.LeaseName}
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		c.syncOnce(ctx, ref)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.o.Trigger:
		}
	}
}

func (c *Controller) syncOnce(ctx context.Context, ref *corev1.ObjectReference) {
	sctx, cancel := context.WithTimeout(ctx, max(c.o.Interval, 30*time.Second))
	defer cancel()
	res, err := c.o.Publisher.Sync(sctx)
	if ctx.Err() != nil {
		return // leadership lost mid-sync: not a publish failure
	}
	c.lastErr.Store(&err)
	if err != nil {
		c.o.Logger.Error("publish failed", zap.Error(err))
		if c.o.Recorder != nil {
			c.o.Recorder.Eventf(ref, nil, corev1.EventTypeWarning, ReasonPublishFailed, "Publish", "%s", trimNote(err.Error()))
		}
		return
	}
	if len(res.Written) > 0 && c.o.Recorder != nil {
		c.o.Recorder.Eventf(ref, nil, corev1.EventTypeNormal, ReasonPublished, "Publish", "wrote %v; keys %v", res.Written, res.Keys)
	}
}

// trimNote keeps an Event's note within the API's 1 kB limit.
func trimNote(s string) string {
	if len(s) > 1000 {
		return s[:997] + "..."
	}
	return s
}
