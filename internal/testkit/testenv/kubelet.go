package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// RoleAnnotation is IRSA's ServiceAccount annotation naming the IAM role.
const RoleAnnotation = "eks.amazonaws.com/role-arn"

// EnsureNamespace creates a namespace if it does not exist.
func (e *Env) EnsureNamespace(ctx context.Context, name string) error {
	_, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// CreateServiceAccount creates a ServiceAccount (and its namespace) with the
// given annotations, e.g. {RoleAnnotation: env.RoleARN}.
func (e *Env) CreateServiceAccount(ctx context.Context, namespace, name string, annotations map[string]string) (*corev1.ServiceAccount, error) {
	if err := e.EnsureNamespace(ctx, namespace); err != nil {
		return nil, err
	}
	sa, err := e.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create serviceaccount %s/%s: %w", namespace, name, err)
	}
	return sa, nil
}

// PodSpec describes a pod as the kubelet would run it.
type PodSpec struct {
	Namespace      string
	Name           string
	ServiceAccount string
	Node           string
	// IP is the pod's address (a 127.x address in integration tests).
	IP netip.Addr
	// IPs, if set, are all of the pod's addresses instead (status.podIPs,
	// the first also status.podIP): dual-stack, or IPv6 only.
	IPs []netip.Addr
	// HostNetwork marks a pod that shares the node's network namespace.
	HostNetwork bool
	// Labels and Annotations are copied onto the pod.
	Labels, Annotations map[string]string
}

// RunPod plays scheduler and kubelet: it registers the node if needed,
// creates the pod bound to it, then reports it Running with its IP through the
// status subresource, exactly as a kubelet does.
func (e *Env) RunPod(ctx context.Context, spec PodSpec) (*corev1.Pod, error) {
	if err := e.EnsureNode(ctx, spec.Node); err != nil {
		return nil, err
	}
	automount := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Namespace: spec.Namespace, Labels: spec.Labels, Annotations: spec.Annotations},
		Spec: corev1.PodSpec{
			NodeName:                     spec.Node,
			ServiceAccountName:           spec.ServiceAccount,
			AutomountServiceAccountToken: &automount,
			HostNetwork:                  spec.HostNetwork,
			Containers:                   []corev1.Container{{Name: "app", Image: "podcreds.invalid/app:test"}},
		},
	}
	created, err := e.Client.CoreV1().Pods(spec.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	ips := spec.IPs
	if len(ips) == 0 {
		ips = []netip.Addr{spec.IP}
	}
	return e.SetPodStatusIPs(ctx, created, corev1.PodRunning, ips...)
}

// SetPodStatus patches a pod's phase and IP through the status subresource.
// An invalid ip clears nothing and sets no IP.
func (e *Env) SetPodStatus(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, ip netip.Addr) (*corev1.Pod, error) {
	return e.SetPodStatusIPs(ctx, pod, phase, ip)
}

// SetPodStatusIPs is SetPodStatus with every address of the pod (the first
// is status.podIP); invalid addresses are left out.
func (e *Env) SetPodStatusIPs(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, ips ...netip.Addr) (*corev1.Pod, error) {
	status := map[string]any{"phase": phase}
	var podIPs []map[string]string
	for _, ip := range ips {
		if ip.IsValid() {
			podIPs = append(podIPs, map[string]string{"ip": ip.String()})
		}
	}
	if len(podIPs) > 0 {
		status["podIP"] = podIPs[0]["ip"]
		status["podIPs"] = podIPs
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, err
	}
	updated, err := e.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("patch status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return updated, nil
}

// EnsureNode registers a Node object, as a kubelet does when it joins.
func (e *Env) EnsureNode(ctx context.Context, name string) error {
	_, err := e.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

// DeletePod deletes a pod at once (grace period 0), as a kubelet confirming
// the containers are gone would.
func (e *Env) DeletePod(ctx context.Context, namespace, name string) error {
	zero := int64(0)
	err := e.Client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	return nil
}
