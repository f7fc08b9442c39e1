package agent

import (
	"context"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podcreds/podcreds/kube"
)

// removeStartupTaint takes the node's startup taint off once the agent
// serves, so the scheduler places pods on the node only when their
// credentials are there to be had. It retries (the API server may be
// unreachable, or the node changed under the patch) until it succeeds or
// ctx ends; the node stays tainted meanwhile, which is the safe side.
func (a *Agent) removeStartupTaint(ctx context.Context, nodes kube.NodeTaints, key string) {
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 30 * time.Second}
	for {
		removed, err := nodes.RemoveNoScheduleTaint(ctx, a.opts.NodeName, key)
		if err == nil {
			if removed {
				a.logger.Info("removed the startup taint: pods may now be scheduled here", zap.String("taint", key))
			} else {
				a.logger.Debug("the node carries no startup taint", zap.String("taint", key))
			}
			return
		}
		a.logger.Warn("cannot remove the startup taint yet; will retry (the deploy's ValidatingAdmissionPolicy refuses any other change to the node)",
			zap.String("taint", key), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
}
