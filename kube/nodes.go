package kube

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// NodeTaints removes a startup taint from a node: the one write the agent
// makes to its node. A ValidatingAdmissionPolicy (deploy/startup-taint.yaml)
// keeps the agent's identity from making any other.
type NodeTaints interface {
	// RemoveNoScheduleTaint removes the NoSchedule taint with key from node,
	// reporting whether there was one. It changes nothing else.
	RemoveNoScheduleTaint(ctx context.Context, node, key string) (bool, error)
}

// NewNodeTaints returns a NodeTaints for cfg.
func NewNodeTaints(cfg *rest.Config) (NodeTaints, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return c.(*restClient), nil
}

// taint is a node taint, kept whole (with fields this view does not name)
// so the patch writes the other taints back exactly as they were.
type taint = map[string]any

func (c *restClient) RemoveNoScheduleTaint(ctx context.Context, node, key string) (bool, error) {
	raw, err := c.rc.Get().Resource("nodes").Name(node).DoRaw(ctx)
	if err != nil {
		return false, err
	}
	var n struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Spec struct {
			Taints []taint `json:"taints"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return false, fmt.Errorf("node %s: %w", node, err)
	}
	keep := make([]taint, 0, len(n.Spec.Taints))
	for _, t := range n.Spec.Taints {
		if t["key"] == key && t["effect"] == "NoSchedule" {
			continue
		}
		keep = append(keep, t)
	}
	if len(keep) == len(n.Spec.Taints) {
		return false, nil
	}
	// The test makes it a compare-and-swap: a taint list that changed since
	// the read is a conflict, not overwritten.
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": n.Metadata.ResourceVersion},
		{"op": "replace", "path": "/spec/taints", "value": keep},
	})
	if err != nil {
		return false, err
	}
	if err := c.rc.Patch(types.JSONPatchType).Resource("nodes").Name(node).Body(patch).Do(ctx).Error(); err != nil {
		return false, err
	}
	return true, nil
}
