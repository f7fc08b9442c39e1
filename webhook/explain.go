package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/roles"
)

// Decision is what the webhook does with a pod at its creation, as
// `podcreds explain` reports it: the same steps as an admission review.
type Decision struct {
	// Inject is true when the webhook writes into the pod.
	Inject bool `json:"inject"`
	// Why says why it does not, or why admission fails (Refused).
	Why     string `json:"why,omitempty"`
	Refused bool   `json:"refused,omitempty"`
	// Containers are those it injects into; Env the variables it sets in
	// each; Volume the projected token it mounts at MountDir.
	Containers []string `json:"containers,omitempty"`
	Env        []string `json:"env,omitempty"`
	Volume     string   `json:"volume,omitempty"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Explain decides on pod (a core/v1 Pod as JSON) as admit does: the same
// subject, the webhook's own role decision on client (which knows no
// --allowed-accounts: the agent applies those) and the webhook's settings.
// A pod that was injected at creation has nothing left to inject: its
// Decision says so.
func Explain(ctx context.Context, podJSON []byte, client roles.Client, s Settings) (Decision, error) {
	return explainWith(ctx, podJSON, newResolve(client), s)
}

func explainWith(ctx context.Context, podJSON []byte, resolve func(context.Context, roles.Pod) error, s Settings) (Decision, error) {
	var pod podView
	if err := json.Unmarshal(podJSON, &pod); err != nil {
		return Decision{}, fmt.Errorf("decoding the pod: %w", err)
	}
	if strings.TrimSpace(pod.Metadata.Labels[InjectLabel]) == "false" {
		return Decision{Why: "the pod is labelled " + InjectLabel + "=false"}, nil
	}
	subject := subjectOf(pod.Metadata.Namespace, &pod)
	roleErr := resolve(ctx, subject)
	leave, warning, err := leaveAlone(subject, roleErr)
	if err != nil {
		return Decision{}, err
	}
	if leave {
		d := Decision{Why: "the agent would refuse the pod (" + failure.From(roleErr).Code + ")"}
		if warning != "" {
			d.Warnings = []string{warning}
		}
		return d, nil
	}
	ops, warnings, err := plan(&pod, s)
	var ref *refusal
	if errors.As(err, &ref) {
		return Decision{Refused: true, Why: "admission fails: " + ref.msg}, nil
	}
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Warnings: warnings}
	if len(ops) == 0 {
		d.Why = "nothing to add: every container already sets its credentials (injected at creation, or by hand), is skipped, or mounts something else at " + MountDir
		return d, nil
	}
	d.Inject = true
	env := map[string]bool{}
	for _, op := range ops {
		switch {
		case strings.HasPrefix(op.Path, "/spec/volumes"):
			d.Volume = fmt.Sprintf("%s: projected ServiceAccount token, audience %s, %s, at %s", VolumeName, s.TokenAudience, s.TokenExpiration, TokenFile)
		case strings.HasSuffix(op.Path, "/env") || strings.HasSuffix(op.Path, "/env/-"):
			if name := containerAt(&pod, op.Path); name != "" && !contains(d.Containers, name) {
				d.Containers = append(d.Containers, name)
			}
			switch v := op.Value.(type) {
			case []envVar:
				for _, e := range v {
					env[e.Name+"="+e.Value] = true
				}
			case envVar:
				env[v.Name+"="+v.Value] = true
			}
		}
	}
	for e := range env {
		d.Env = append(d.Env, e)
	}
	sort.Strings(d.Env)
	return d, nil
}

// containerAt names the container a patch path such as
// /spec/containers/0/env addresses.
func containerAt(pod *podView, path string) string {
	parts := strings.Split(path, "/")
	if len(parts) < 4 {
		return ""
	}
	i, err := strconv.Atoi(parts[3])
	if err != nil {
		return ""
	}
	list := pod.Spec.Containers
	if parts[2] == "initContainers" {
		list = pod.Spec.InitContainers
	}
	if i < 0 || i >= len(list) {
		return ""
	}
	return list[i].Name
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
