package webhook

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
)

// serviceAccounts answers the role decision's reads from an informer over
// every namespace's ServiceAccounts, and reads live where the informer may
// lag behind the pod being admitted: a ServiceAccount it does not hold yet,
// or holds without a role (one annotated a moment ago). A pod's
// ServiceAccount is therefore never "without a role" merely because a watch
// event is late; the price is one GET per admitted pod whose ServiceAccount
// has no role. Namespaces are read live: only pods that pick a role with
// roles.PodRoleAnnotation need one.
type serviceAccounts struct {
	api      kube.ServiceAccounts
	informer toolscache.SharedIndexInformer
	metrics  *Metrics
}

func newServiceAccounts(api kube.ServiceAccounts, m *Metrics) *serviceAccounts {
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return api.ListServiceAccounts(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return api.WatchServiceAccounts(ctx, opts)
		},
	}
	inf := toolscache.NewSharedIndexInformer(lw, &kube.ServiceAccount{}, 0, toolscache.Indexers{})
	// Keep only the annotations the decision reads: a cluster's
	// ServiceAccounts can be many, with large annotations of their own.
	_ = inf.SetTransform(func(obj any) (any, error) {
		sa, ok := obj.(*kube.ServiceAccount)
		if !ok {
			return obj, nil
		}
		out := &kube.ServiceAccount{TypeMeta: sa.TypeMeta}
		out.Name, out.Namespace, out.UID, out.ResourceVersion = sa.Name, sa.Namespace, sa.UID, sa.ResourceVersion
		for k, v := range sa.Annotations {
			if strings.HasPrefix(k, "eks.amazonaws.com/") {
				if out.Annotations == nil {
					out.Annotations = map[string]string{}
				}
				out.Annotations[k] = v
			}
		}
		return out, nil
	})
	return &serviceAccounts{api: api, informer: inf, metrics: m}
}

// waitSynced waits for the running informer's first list.
func (s *serviceAccounts) waitSynced(ctx context.Context) error {
	if !toolscache.WaitForCacheSync(ctx.Done(), s.informer.HasSynced) {
		return fmt.Errorf("serviceaccount informer did not sync: %w", ctx.Err())
	}
	return nil
}

func (s *serviceAccounts) synced() bool { return s.informer.HasSynced() }

// GetServiceAccount implements roles.Client.
func (s *serviceAccounts) GetServiceAccount(ctx context.Context, namespace, name string) (*kube.ServiceAccount, error) {
	obj, ok, err := s.informer.GetStore().GetByKey(namespace + "/" + name)
	if err == nil && ok {
		if sa, isSA := obj.(*kube.ServiceAccount); isSA && strings.TrimSpace(sa.Annotations[roles.RoleAnnotation]) != "" {
			s.metrics.ServiceAccountReads.WithLabelValues("informer").Inc()
			return sa, nil
		}
	}
	s.metrics.ServiceAccountReads.WithLabelValues("live").Inc()
	return s.api.GetServiceAccount(ctx, namespace, name)
}

// GetNamespace implements roles.Client.
func (s *serviceAccounts) GetNamespace(ctx context.Context, name string) (*kube.Namespace, error) {
	return s.api.GetNamespace(ctx, name)
}
