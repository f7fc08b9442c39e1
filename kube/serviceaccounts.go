package kube

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// ServiceAccountList is a page of ServiceAccounts.
type ServiceAccountList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceAccount `json:"items"`
}

// DeepCopyObject implements runtime.Object.
func (l *ServiceAccountList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &ServiceAccountList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]ServiceAccount, len(l.Items))
		for i := range l.Items {
			out.Items[i].TypeMeta = l.Items[i].TypeMeta
			l.Items[i].ObjectMeta.DeepCopyInto(&out.Items[i].ObjectMeta)
		}
	}
	return out
}

func init() { scheme.AddKnownTypes(coreV1, &ServiceAccountList{}) }

// ServiceAccounts is what the admission webhook asks of the API server: every
// namespace's ServiceAccounts for an informer, and one live read and the
// namespace read (Client's) behind it.
type ServiceAccounts interface {
	GetServiceAccount(ctx context.Context, namespace, name string) (*ServiceAccount, error)
	GetNamespace(ctx context.Context, name string) (*Namespace, error)
	ListServiceAccounts(ctx context.Context, opts metav1.ListOptions) (*ServiceAccountList, error)
	WatchServiceAccounts(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// NewServiceAccounts returns ServiceAccounts for cfg, over the same REST
// client New builds.
func NewServiceAccounts(cfg *rest.Config) (ServiceAccounts, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	rc, ok := c.(*restClient)
	if !ok {
		return nil, fmt.Errorf("kubernetes client: unexpected %T", c)
	}
	return rc, nil
}

func (c *restClient) ListServiceAccounts(ctx context.Context, opts metav1.ListOptions) (*ServiceAccountList, error) {
	out := &ServiceAccountList{}
	err := c.rc.Get().Resource("serviceaccounts").VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) WatchServiceAccounts(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().Resource("serviceaccounts").VersionedParams(&opts, parameterCodec).Watch(ctx)
}
