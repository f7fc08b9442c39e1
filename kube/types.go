package kube

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The agent's views of core/v1 objects: the fields it reads, with the API's
// JSON names, decoded straight from the API server's answers (unknown fields
// are skipped). Linking k8s.io/api/core/v1 instead would register and keep
// every core type — a fifth of the binary — and each cached pod would carry
// the zero value of the whole PodSpec and PodStatus.

// PodPhase is a pod's status.phase.
type PodPhase string

// The phases the agent tells apart.
const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
)

// Pod is a core/v1 Pod as the agent sees it.
type Pod struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PodSpec   `json:"spec,omitempty"`
	Status            PodStatus `json:"status,omitempty"`
}

// PodSpec holds the fields of spec the agent reads.
type PodSpec struct {
	NodeName           string `json:"nodeName,omitempty"`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	HostNetwork        bool   `json:"hostNetwork,omitempty"`
}

// PodStatus holds the fields of status the agent reads.
type PodStatus struct {
	Phase  PodPhase `json:"phase,omitempty"`
	PodIP  string   `json:"podIP,omitempty"`
	PodIPs []PodIP  `json:"podIPs,omitempty"`
}

// PodIP is one entry of status.podIPs.
type PodIP struct {
	IP string `json:"ip"`
}

// PodList is a page of pods.
type PodList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pod `json:"items"`
}

// ServiceAccount is a core/v1 ServiceAccount's metadata (its annotations
// name the role).
type ServiceAccount struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// Namespace is a core/v1 Namespace's metadata (its annotations allow roles).
type Namespace struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

// DeepCopyInto copies p into out, sharing nothing.
func (p *Pod) DeepCopyInto(out *Pod) {
	*out = *p
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Status.PodIPs = slices.Clone(p.Status.PodIPs)
}

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	if p == nil {
		return nil
	}
	out := new(Pod)
	p.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *PodList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &PodList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]Pod, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (s *ServiceAccount) DeepCopyObject() runtime.Object {
	if s == nil {
		return nil
	}
	out := &ServiceAccount{TypeMeta: s.TypeMeta}
	s.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// DeepCopyObject implements runtime.Object.
func (n *Namespace) DeepCopyObject() runtime.Object {
	if n == nil {
		return nil
	}
	out := &Namespace{TypeMeta: n.TypeMeta}
	n.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}
