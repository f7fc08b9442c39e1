// Package stack assembles one node agent from its parts — TokenRequest
// manager, STS exchange, credential cache, agent — exactly as the podcreds
// binary runs it, so tests and benchmarks exercise the same wiring instead
// of a copy of it.
package stack

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/metrics"
	"github.com/podcreds/podcreds/podevents"
	"github.com/podcreds/podcreds/tokenreq"
)

// Options are the parts a caller chooses. Agent and Cache are taken as
// templates: Build fills in their Client, Cache, Tokens, Logger and Metrics.
type Options struct {
	Client kube.Client
	STS    tokenreq.STSClient
	// SessionDuration is asked of STS (default 1h).
	SessionDuration time.Duration
	// ClusterName is the kubernetes-cluster session tag of second hops.
	ClusterName string
	// STSRate, if positive, caps this node's STS calls per second (bursts of
	// STSBurst), halving on throttling (tokenreq.Budget).
	STSRate  float64
	STSBurst int
	// Events, if set, receives Kubernetes Events on pods the agent refuses
	// or cannot serve (Stack.Events; run it), at most one per pod and
	// reason per EventInterval (default podevents.DefaultInterval);
	// EventUnavailableAfter is podevents.Options.UnavailableAfter. Build it
	// with podevents.NewClient.
	Events                eventsv1client.EventsV1Interface
	EventInterval         time.Duration
	EventUnavailableAfter time.Duration
	Agent                 agent.Options
	Cache                 cache.Options
	Logger                *zap.Logger
	// Registry receives the metrics (a new one if nil).
	Registry *prometheus.Registry
}

// Stack is an assembled agent and the parts a caller may want to observe.
type Stack struct {
	Agent    *agent.Agent
	Cache    *cache.Cache
	Tokens   *tokenreq.TokenManager
	Metrics  *metrics.Metrics
	Registry *prometheus.Registry
	// Events writes the agent's Events; nil without Options.Events. Run it
	// beside the agent.
	Events *podevents.Notifier
}

// Build assembles an agent; run it with Stack.Agent.Run and release it with
// Close once Run has returned.
func Build(o Options) (*Stack, error) {
	if o.Client == nil || o.STS == nil || o.Logger == nil {
		return nil, errors.New("stack: Client, STS and Logger are required")
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	m := metrics.New(o.Registry)
	tokens := tokenreq.NewTokenManager(o.Client, tokenreq.TokenOptions{Logger: o.Logger, Metrics: m})
	stsClient := o.STS
	if o.STSRate > 0 {
		stsClient = tokenreq.NewBudget(stsClient, o.STSRate, o.STSBurst, m)
	}
	// The second hop (a target role) goes through the same client, and so
	// the same budget, when the client can make it.
	chain, _ := stsClient.(tokenreq.ChainClient)
	exchanger, err := tokenreq.NewExchanger(tokens, stsClient, tokenreq.ExchangerOptions{
		SessionDuration: o.SessionDuration, Logger: o.Logger, Metrics: m,
		Chain: chain, ClusterName: o.ClusterName,
	})
	if err != nil {
		return nil, err
	}
	o.Cache.Logger, o.Cache.Metrics = o.Logger, m
	c := cache.New(exchanger, o.Cache)

	ao := o.Agent
	if o.Events != nil {
		ao.Events = podevents.New(podevents.Options{
			Client: o.Events, Instance: ao.NodeName, Interval: o.EventInterval, UnavailableAfter: o.EventUnavailableAfter,
			Logger: o.Logger, Metrics: m, Clock: ao.Clock,
		})
	}
	ao.Client, ao.Cache, ao.Tokens, ao.Logger, ao.Metrics = o.Client, c, tokens, o.Logger, m
	if ao.Gatherer == nil {
		ao.Gatherer = o.Registry
	}
	a, err := agent.New(ao)
	if err != nil {
		c.Close()
		return nil, err
	}
	metrics.RegisterReady(o.Registry, a.Ready)
	return &Stack{Agent: a, Cache: c, Tokens: tokens, Metrics: m, Registry: o.Registry, Events: ao.Events}, nil
}

// Close stops the cache's background work. Call it after Agent.Run returns.
func (s *Stack) Close() { s.Cache.Close() }
