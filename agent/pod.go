package agent

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podcreds/podcreds/cache"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
)

// Pod is what the agent keeps of a pod on its node: just enough to identify
// a caller and find its role. A *Pod is immutable once built; an update
// replaces it, so readers never lock it.
type Pod struct {
	Namespace string
	Name      string
	UID       types.UID
	// ServiceAccount is spec.serviceAccountName; empty only for mirror
	// (static) pods, which have no role.
	ServiceAccount string
	// IPs are every address in status.podIPs (status.podIP included).
	IPs         []netip.Addr
	HostNetwork bool
	Phase       kube.PodPhase
	// Deleting is set once the pod has a deletion timestamp.
	Deleting bool
	// RoleARN is the role the pod's PodRoleAnnotation asks for, if any.
	RoleARN string
	// TargetRoleARN is the second-hop role its TargetRoleAnnotation names.
	TargetRoleARN string

	// decision is the pod's last role decision while it holds (see
	// Agent.resolve): the one field set after the Pod is built. An update
	// of the pod replaces the Pod, and the decision with it.
	decision atomic.Pointer[podDecision]
}

// podDecision is a kept role decision: the key with its cache entry, good
// until until.
type podDecision struct {
	ref   cache.Ref
	until time.Time
}

// Ref names the pod for the cache and the TokenRequest binding.
func (p *Pod) Ref() cache.PodRef {
	return cache.PodRef{Namespace: p.Namespace, Name: p.Name, UID: p.UID}
}

// Identifiable reports whether a request from one of the pod's IPs may be
// taken as coming from this pod. A hostNetwork pod shares the node's address
// with every other hostNetwork pod and the node itself; a finished or
// terminating pod's address may already belong to its successor.
func (p *Pod) Identifiable() bool {
	return !p.HostNetwork && !p.Deleting && len(p.IPs) > 0 &&
		p.Phase != kube.PodSucceeded && p.Phase != kube.PodFailed
}

// WillRun reports whether the pod is, or is about to be, running: its
// credentials are worth fetching as soon as it is scheduled, before it even
// has an address, so the STS exchange overlaps its image pull and container
// start. (hostNetwork pods included: they are served on a verified token.)
func (p *Pod) WillRun() bool {
	return !p.Deleting && p.Phase != kube.PodSucceeded && p.Phase != kube.PodFailed
}

// Subject is what the role decision reads of the pod.
func (p *Pod) Subject() roles.Pod {
	return roles.Pod{Namespace: p.Namespace, Name: p.Name, ServiceAccount: p.ServiceAccount, RoleARN: p.RoleARN, TargetRoleARN: p.TargetRoleARN}
}

// String is namespace/name, for logs and messages.
func (p *Pod) String() string { return p.Namespace + "/" + p.Name }

// podFromObject converts an API pod. Unparseable IPs are skipped: the API
// server validates them, so one would only come from a broken status.
func podFromObject(o *kube.Pod) *Pod {
	p := &Pod{
		Namespace:      o.Namespace,
		Name:           o.Name,
		UID:            o.UID,
		ServiceAccount: o.Spec.ServiceAccountName,
		HostNetwork:    o.Spec.HostNetwork,
		Phase:          o.Status.Phase,
		Deleting:       o.DeletionTimestamp != nil,
		RoleARN:        strings.TrimSpace(o.Annotations[roles.PodRoleAnnotation]),
		TargetRoleARN:  strings.TrimSpace(o.Annotations[roles.TargetRoleAnnotation]),
	}
	// An empty ServiceAccount stays empty: the API server sets "default"
	// on every pod but mirror (static) pods, which may use none (Resolve
	// refuses them).
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		for _, have := range p.IPs {
			if have == a {
				return
			}
		}
		p.IPs = append(p.IPs, a)
	}
	if o.Status.PodIP != "" {
		add(o.Status.PodIP)
	}
	for _, ip := range o.Status.PodIPs {
		add(ip.IP)
	}
	return p
}

// trimPod is the informer's transform: it keeps only the fields podFromObject
// reads, so a node with hundreds of pods holds kilobytes, not megabytes.
func trimPod(obj any) (any, error) {
	o, ok := obj.(*kube.Pod)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone: keep as is
	}
	return &kube.Pod{
		TypeMeta:   o.TypeMeta,
		ObjectMeta: metaTrim(o),
		Spec: kube.PodSpec{
			NodeName:           o.Spec.NodeName,
			ServiceAccountName: o.Spec.ServiceAccountName,
			HostNetwork:        o.Spec.HostNetwork,
		},
		Status: kube.PodStatus{Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
	}, nil
}

func metaTrim(o *kube.Pod) metav1.ObjectMeta {
	var ann map[string]string
	for _, k := range [...]string{roles.PodRoleAnnotation, roles.TargetRoleAnnotation} { // the only annotations read
		if v, ok := o.Annotations[k]; ok {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	return metav1.ObjectMeta{
		Annotations:       ann,
		Name:              o.Name,
		Namespace:         o.Namespace,
		UID:               o.UID,
		ResourceVersion:   o.ResourceVersion,
		DeletionTimestamp: o.DeletionTimestamp,
	}
}

// PodFrom is what the agent makes of an API pod: `podcreds explain` reads a
// pod through it, so it sees the pod exactly as the agent does.
func PodFrom(o *kube.Pod) *Pod { return podFromObject(o) }
