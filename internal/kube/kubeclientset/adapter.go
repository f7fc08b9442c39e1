// Package kubeclientset adapts a generated clientset to kube.Client, so unit
// tests can keep client-go's fake clientset and its reactors. The agent's
// binary never imports it (cmd/podcreds's link test keeps it that way).
package kubeclientset

import (
	"context"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/podcreds/podcreds/internal/kube"
)

// Wrap returns cs as a kube.Client.
func Wrap(cs kubernetes.Interface) kube.Client { return adapter{cs} }

type adapter struct{ cs kubernetes.Interface }

func (a adapter) GetServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	return a.cs.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (a adapter) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	return a.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
}

func (a adapter) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	return a.cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
}

func (a adapter) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return a.cs.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, opts)
}

func (a adapter) CreateToken(ctx context.Context, namespace, serviceAccount string, req *authnv1.TokenRequest) (*authnv1.TokenRequest, error) {
	return a.cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
}

func (a adapter) GetRaw(ctx context.Context, path string) ([]byte, error) {
	return a.cs.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx)
}
