// Package explain answers "what does podcreds make of this pod?" for
// `podcreds explain`: the pod as the agent sees it, the role decision and
// where each part came from (roles.Decide, the agent's own), what the
// admission webhook would inject (webhook.Explain, the webhook's own), and,
// from a node agent's debug endpoint, what it holds for the pod right now.
// It reimplements none of them.
package explain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
	"github.com/podcreds/podcreds/webhook"
)

// Options are the cluster to read and the settings the agent and the
// webhook run with (their flags of the same names).
type Options struct {
	Client          kube.Client
	AllowedAccounts []string
	Audience        string
	TokenExpiration time.Duration
	Webhook         webhook.Settings
	// Agent, if set, is a node agent's health address (host:port): its
	// debug endpoint adds the live state.
	Agent string
	// HTTPClient reaches Agent (default: a client with a 10 s timeout).
	HTTPClient *http.Client
}

// Report is everything explain says about one pod.
type Report struct {
	Pod             Pod              `json:"pod"`
	Role            agent.DebugRole  `json:"role"`
	Answer          Answer           `json:"answer"`
	AllowedAccounts []string         `json:"allowedAccounts"`
	Webhook         webhook.Decision `json:"webhook"`
	// Agent is the node agent's live view; AgentError says why it is
	// missing when one was asked.
	Agent      *agent.DebugPod `json:"agent,omitempty"`
	AgentError string          `json:"agentError,omitempty"`
}

// Pod is the pod as the agent sees it.
type Pod struct {
	Namespace      string   `json:"namespace"`
	Name           string   `json:"name"`
	UID            string   `json:"uid"`
	Node           string   `json:"node"`
	IPs            []string `json:"ips"`
	ServiceAccount string   `json:"serviceAccount"`
	HostNetwork    bool     `json:"hostNetwork,omitempty"`
	Phase          string   `json:"phase"`
	// Identifiable is whether a request from its address is taken as its.
	Identifiable bool `json:"identifiable"`
}

// Answer is what the agent answers the pod: credentials, or a refusal.
type Answer struct {
	Served  bool   `json:"served"`
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Explain reports on pod namespace/name.
func Explain(ctx context.Context, o Options, namespace, name string) (*Report, error) {
	raw, err := o.Client.GetRaw(ctx, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name))
	if err != nil {
		return nil, fmt.Errorf("reading pod %s/%s: %w", namespace, name, err)
	}
	var obj kube.Pod
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("decoding pod %s/%s: %w", namespace, name, err)
	}
	p := agent.PodFrom(&obj)
	r := &Report{Pod: Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Node: obj.Spec.NodeName, IPs: []string{},
		ServiceAccount: p.ServiceAccount, HostNetwork: p.HostNetwork, Phase: string(p.Phase), Identifiable: p.Identifiable()},
		AllowedAccounts: append([]string{}, o.AllowedAccounts...)}
	for _, ip := range p.IPs {
		r.Pod.IPs = append(r.Pod.IPs, ip.String())
	}
	resolver := roles.NewRoleResolver(o.Client, clock.RealClock{}, time.Minute, o.Audience, o.TokenExpiration, o.AllowedAccounts)
	d := resolver.Decide(ctx, p.Subject())
	r.Role = agent.DebugRoleOf(d)
	if d.Err != nil {
		fe := failure.From(d.Err)
		if fe.Retriable() {
			return nil, fmt.Errorf("deciding pod %s/%s's role: %s", namespace, name, fe.Message)
		}
		r.Answer = Answer{Status: fe.Status, Code: fe.Code, Message: fe.Message}
	} else {
		r.Answer.Served = true
	}
	if r.Webhook, err = webhook.Explain(ctx, raw, o.Client, o.Webhook); err != nil {
		return nil, fmt.Errorf("the webhook's decision: %w", err)
	}
	if o.Agent != "" {
		r.Agent, err = askAgent(ctx, o, namespace, name)
		if err != nil {
			r.AgentError = err.Error()
		}
	}
	return r, nil
}

// askAgent reads the agent's debug endpoint for the pod.
func askAgent(ctx context.Context, o Options, namespace, name string) (*agent.DebugPod, error) {
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	u := "http://" + o.Agent + agent.DebugPodPath + url.PathEscape(namespace) + "/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the agent at %s: %w (is it the agent's --health-listen, port-forwarded or on the node?)", o.Agent, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		var e agent.DebugError
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("the agent at %s: %s", o.Agent, e.Message)
		}
		return nil, fmt.Errorf("the agent at %s answered %s", o.Agent, res.Status)
	}
	var dp agent.DebugPod
	if err := json.Unmarshal(body, &dp); err != nil {
		return nil, fmt.Errorf("the agent at %s: %w", o.Agent, err)
	}
	return &dp, nil
}
