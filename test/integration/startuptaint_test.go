package integration

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podcreds/podcreds/agent"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/kube"
)

// startupTaint is the key deploy/startup-taint.yaml's policy lets the agent
// remove.
const startupTaint = "podcreds.io/agent-not-ready"

// TestStartupTaintPolicy: a node registered with the startup taint keeps it
// until its agent is warm, then the agent removes it; deploy/'s
// ValidatingAdmissionPolicy lets the agent's identity (a token bound to the
// agent pod on that node) remove only that taint, only from that node.
func TestStartupTaintPolicy(t *testing.T) {
	ctx := ctxT(t)
	suffix := randomSuffix(t)
	own, other := "taint-own-"+suffix, "taint-other-"+suffix
	otherTaint := corev1.Taint{Key: "example.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	startup := corev1.Taint{Key: startupTaint, Effect: corev1.TaintEffectNoSchedule}
	for name, taints := range map[string][]corev1.Taint{own: {startup, otherTaint}, other: {startup}} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}, Spec: corev1.NodeSpec{Taints: taints}}
		if _, err := env.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}

	// The agent's identity and the policy, exactly as deploy/ has them.
	objs, err := renderKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.EnsureNamespace(ctx, agentNamespace); err != nil {
		t.Fatal(err)
	}
	dyn, mapper := dynamicClient(t, env.Config)
	for _, o := range []*unstructured.Unstructured{
		mustFind(t, objs, "ServiceAccount", agentNamespace, "podcreds"),
		mustFind(t, objs, "ClusterRole", "", "podcreds-agent"),
		mustFind(t, objs, "ClusterRoleBinding", "", "podcreds-agent"),
		mustFind(t, objs, "ValidatingAdmissionPolicy", "", "podcreds-agent-startup-taint"),
		mustFind(t, objs, "ValidatingAdmissionPolicyBinding", "", "podcreds-agent-startup-taint"),
	} {
		if _, err := resourceFor(t, dyn, mapper, o).Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: deployManager, Force: true}); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	// The agent pod on its node, and its token, bound to the pod as the
	// kubelet's projected token is (which gives it the node's name).
	agentPod, err := env.RunPod(ctx, testenv.PodSpec{Namespace: agentNamespace, Name: "agent-" + suffix, ServiceAccount: "podcreds", Node: own, HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	token := func(bound bool) string {
		spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}
		if bound {
			spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: agentPod.Name, UID: agentPod.UID}
		}
		tr, err := env.Client.CoreV1().ServiceAccounts(agentNamespace).CreateToken(ctx, "podcreds", &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	configFor := func(tok string) *rest.Config {
		return &rest.Config{Host: env.APIServerURL, BearerToken: tok, TLSClientConfig: rest.TLSClientConfig{CAData: env.CACertPEM}}
	}
	agentCfg := configFor(token(true))
	asAgent, err := kubernetes.NewForConfig(agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	unbound, err := kubernetes.NewForConfig(configFor(token(false)))
	if err != nil {
		t.Fatal(err)
	}

	// patch applies a JSON merge patch to a node as c, dry run or not.
	patch := func(c kubernetes.Interface, node string, body map[string]any, dryRun bool) error {
		b, _ := json.Marshal(body)
		opts := metav1.PatchOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, b, opts)
		return err
	}
	taintsPatch := func(ts ...corev1.Taint) map[string]any { return map[string]any{"spec": map[string]any{"taints": ts}} }
	// The policy applies a moment after it is stored: wait, with dry runs,
	// until it refuses the agent's removing the taint from another node.
	eventually(t, 30*time.Second, "the ValidatingAdmissionPolicy to take effect", func() bool {
		return apierrors.IsForbidden(patch(asAgent, other, taintsPatch(), true)) || apierrors.IsInvalid(patch(asAgent, other, taintsPatch(), true))
	})

	for _, tc := range []struct {
		name   string
		client kubernetes.Interface
		node   string
		body   map[string]any
		want   string // in the refusal
	}{
		{"removing the startup taint from another node", asAgent, other, taintsPatch(), "only change its own node"},
		{"removing another taint from its own node", asAgent, own, taintsPatch(startup), "no other taint change"},
		{"adding a taint to its own node", asAgent, own, taintsPatch(startup, otherTaint, corev1.Taint{Key: "x", Effect: corev1.TaintEffectNoExecute}), "no other taint change"},
		{"labelling its own node", asAgent, own, map[string]any{"metadata": map[string]any{"labels": map[string]string{"evil": "1"}}}, "labels, annotations"},
		{"cordoning its own node", asAgent, own, map[string]any{"spec": map[string]any{"unschedulable": true}}, "labels, annotations"},
		{"removing the startup taint with a token not bound to a pod", unbound, own, taintsPatch(otherTaint), "only change its own node"},
	} {
		t.Run("the agent may not: "+tc.name, func(t *testing.T) {
			err := patch(tc.client, tc.node, tc.body, false)
			if err == nil {
				t.Fatal("allowed")
			}
			if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused with %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
	nodeTaints := func(name string) []string {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, tn := range n.Spec.Taints {
			keys = append(keys, tn.Key)
		}
		slices.Sort(keys)
		return keys
	}
	// The API server adds node.kubernetes.io/not-ready to a new node (there
	// is no node controller here to take it off): compare with what it has.
	before := nodeTaints(own)
	if !slices.Contains(before, startupTaint) || !slices.Contains(before, otherTaint.Key) {
		t.Fatalf("refused changes changed the node: taints %v", before)
	}

	// The agent on its node: the taint stays while it warms, and goes once
	// it serves; the other node keeps its own.
	if _, err := env.CreateServiceAccount(ctx, agentNamespace+"-apps-"+suffix, "app", map[string]string{testenv.RoleAnnotation: env.RoleARN}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.RunPod(ctx, testenv.PodSpec{Namespace: agentNamespace + "-apps-" + suffix, Name: "app", ServiceAccount: "app", Node: own, IP: addr(29, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	nodes, err := kube.NewNodeTaints(agentCfg)
	if err != nil {
		t.Fatal(err)
	}
	taintedWhileWarming := 0
	startAgent(t, harnessOptions{node: own, side: true, stsDelay: time.Second, startupTaint: startupTaint, nodes: nodes,
		beforeReady: func(a *agent.Agent, _ string) {
			if slices.Contains(nodeTaints(own), startupTaint) {
				taintedWhileWarming++
			}
		}})
	if taintedWhileWarming == 0 {
		t.Fatal("never saw the node while the agent warmed: the test proved nothing about the order")
	}
	eventually(t, 15*time.Second, "the agent to remove its node's startup taint", func() bool {
		return !slices.Contains(nodeTaints(own), startupTaint)
	})
	want := slices.DeleteFunc(slices.Clone(before), func(k string) bool { return k == startupTaint })
	if got := nodeTaints(own); !slices.Equal(got, want) {
		t.Fatalf("own node's taints after the agent: %v, want %v (only the startup taint gone)", got, want)
	}
	if got := nodeTaints(other); !slices.Contains(got, startupTaint) {
		t.Fatalf("the other node's taints: %v, want its startup taint kept", got)
	}
}
