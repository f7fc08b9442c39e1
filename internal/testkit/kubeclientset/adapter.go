// Package kubeclientset adapts a generated clientset to kube.Client, so unit
// tests can keep client-go's fake clientset and its reactors. The agent's
// binary never imports it (cmd/podcreds's link test keeps it that way).
package kubeclientset

import (
	"context"
	"encoding/json"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/podcreds/podcreds/kube"
)

// Wrap returns cs as a kube.Client.
func Wrap(cs kubernetes.Interface) kube.Client { return adapter{cs} }

type adapter struct{ cs kubernetes.Interface }

// view converts a full API object to the agent's view of it the way the
// agent's own client does: through its JSON.
func view[T any](obj any, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	out := new(T)
	return out, json.Unmarshal(b, out)
}

func (a adapter) GetServiceAccount(ctx context.Context, namespace, name string) (*kube.ServiceAccount, error) {
	return view[kube.ServiceAccount](a.cs.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{}))
}

func (a adapter) GetNamespace(ctx context.Context, name string) (*kube.Namespace, error) {
	return view[kube.Namespace](a.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}))
}

func (a adapter) ListPods(ctx context.Context, opts metav1.ListOptions) (*kube.PodList, error) {
	return view[kube.PodList](a.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts))
}

func (a adapter) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := a.cs.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
		if e.Type == watch.Error {
			return e, true
		}
		p, err := view[kube.Pod](e.Object, nil)
		if err != nil {
			return watch.Event{Type: watch.Error, Object: &metav1.Status{Message: err.Error()}}, true
		}
		e.Object = runtime.Object(p)
		return e, true
	}), nil
}

func (a adapter) CreateToken(ctx context.Context, namespace, serviceAccount string, req *authnv1.TokenRequest) (*authnv1.TokenRequest, error) {
	return a.cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
}

func (a adapter) GetRaw(ctx context.Context, path string) ([]byte, error) {
	return a.cs.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx)
}
