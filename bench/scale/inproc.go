package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/rest"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/agent/stack"
	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/tokenreq"
)

// agentSpec is what a scenario changes about an in-process agent; the rest
// is the binary's defaults (see start).
type agentSpec struct {
	node string
	sts  tokenreq.STSClient
	// cache overrides the refresh policy; MaxWait is the binary's unless set.
	cache cache.Options
	// timeScale, when above 1, is how many times faster than real time a
	// run goes (an hour of credential lifetime in 12 s is 300): the kube
	// client's QPS and the STS budget are scaled by it, so that rate limits
	// meant for hour-long lifetimes do not throttle a compressed run that
	// the real one would not.
	timeScale float64
	// rateLimit is the per-address request limit (the binary's 50/s unless
	// negative: off, for load generators).
	rateLimit float64
}

// inproc is an agent assembled by stack.Build, as cmd/podcreds assembles it,
// running in this process on a loopback port.
type inproc struct {
	*stack.Stack
	url    string
	cancel context.CancelFunc
	done   chan error
}

// Defaults of cmd/podcreds that the in-process agents copy, so that they
// behave as the binary does out of the box (cmd/podcreds/config.go, run.go).
const (
	binaryClientQPS   = 50
	binaryClientBurst = 100
	binarySTSRate     = 20
	binarySTSBurst    = 50
	binaryMaxWait     = 800 * time.Millisecond
	binaryRateLimit   = 50
	binaryRateBurst   = 100
)

// startInproc builds and runs an agent for spec.node and waits until it is
// ready (informer synced, listener bound).
func startInproc(ctx context.Context, env *testenv.Env, logger *zap.Logger, spec agentSpec) (*inproc, error) {
	scale := max(spec.timeScale, 1)
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = float32(binaryClientQPS*scale), int(binaryClientBurst*scale)
	cfg.UserAgent = "podcreds/" + spec.node
	client, err := kube.New(cfg)
	if err != nil {
		return nil, err
	}
	co := spec.cache
	if co.MaxWait == 0 {
		co.MaxWait = binaryMaxWait
	}
	stsRate, stsBurst := binarySTSRate*scale, int(binarySTSBurst*scale)
	rate, burst := float64(binaryRateLimit), binaryRateBurst
	if spec.rateLimit < 0 {
		rate, burst = -1, 0
	}
	st, err := stack.Build(stack.Options{
		Client: client, STS: spec.sts, SessionDuration: time.Hour, Logger: logger.With(zap.String("node", spec.node)),
		STSRate: stsRate, STSBurst: stsBurst, Cache: co,
		Agent: agent.Options{
			NodeName: spec.node, Listeners: []agent.Listener{{Addr: "127.0.0.1:0"}},
			DefaultAudience: testenv.Audience, DefaultTokenExpiration: time.Hour,
			UnknownPodWait: time.Second, ServiceAccountTTL: 30 * time.Second, ShutdownTimeout: 10 * time.Second,
			RateLimit: rate, RateBurst: burst, MaxConnections: 1024,
		},
	})
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &inproc{Stack: st, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- st.Agent.Run(actx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !st.Agent.Ready() {
		select {
		case err := <-a.done:
			st.Close()
			return nil, fmt.Errorf("agent for %s stopped before it was ready: %v", spec.node, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.stop()
			return nil, fmt.Errorf("agent for %s not ready after 30s", spec.node)
		}
	}
	a.url = "http://" + st.Agent.Addrs()[0].String() + "/v1/credentials"
	return a, nil
}

// stop drains the agent and stops its cache.
func (a *inproc) stop() {
	a.cancel()
	<-a.done
	a.Close()
}

// counter sums a metric of the agent's registry over the given labels.
func (a *inproc) counter(name string, labels map[string]string) float64 {
	return metricSum(a.Registry, name, labels)
}
