// Package kube is the slice of the Kubernetes API the agent uses — pods on
// its node, ServiceAccounts, namespaces and TokenRequest — over one REST
// client that speaks protobuf and knows only core/v1 and
// authentication.k8s.io/v1.
//
// It exists for the agent's footprint: the generated clientset registers
// every API group of Kubernetes at start-up and links their clients, which
// roughly doubles the binary and the memory it keeps mapped (bench/scale's
// memory scenario). The agent needs five calls.
package kube

import (
	"context"
	"fmt"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client is what the agent asks of the API server.
type Client interface {
	GetServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error)
	GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error)
	ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// CreateToken is the TokenRequest API: a token for the ServiceAccount,
	// with the audiences, lifetime and pod binding of req.
	CreateToken(ctx context.Context, namespace, serviceAccount string, req *authnv1.TokenRequest) (*authnv1.TokenRequest, error)
	// GetRaw reads a non-resource path of the API server, such as its OIDC
	// discovery document.
	GetRaw(ctx context.Context, path string) ([]byte, error)
}

var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	// The option types (ListOptions, GetOptions, …) as the API server's
	// query parameters, as the generated clientset registers them.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, authnv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(fmt.Sprintf("kube: registering API types: %v", err))
		}
	}
}

// New returns a Client for cfg (whose QPS, Burst, UserAgent and credentials
// it keeps). Requests and answers are protobuf, as kubelet's are, unless cfg
// names its own content types.
func New(cfg *rest.Config) (Client, error) {
	c := rest.CopyConfig(cfg)
	gv := corev1.SchemeGroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/api"
	c.NegotiatedSerializer = codecs.WithoutConversion()
	if c.ContentType == "" {
		c.ContentType = runtime.ContentTypeProtobuf
	}
	if c.AcceptContentTypes == "" {
		c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	}
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &restClient{rc: rc}, nil
}

type restClient struct{ rc *rest.RESTClient }

func (c *restClient) GetServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	out := &corev1.ServiceAccount{}
	err := c.rc.Get().Namespace(namespace).Resource("serviceaccounts").Name(name).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	out := &corev1.Namespace{}
	err := c.rc.Get().Resource("namespaces").Name(name).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) ListPods(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	out := &corev1.PodList{}
	err := c.rc.Get().Resource("pods").VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().Resource("pods").VersionedParams(&opts, parameterCodec).Watch(ctx)
}

func (c *restClient) CreateToken(ctx context.Context, namespace, serviceAccount string, req *authnv1.TokenRequest) (*authnv1.TokenRequest, error) {
	out := &authnv1.TokenRequest{}
	err := c.rc.Post().Namespace(namespace).Resource("serviceaccounts").Name(serviceAccount).SubResource("token").
		Body(req).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) GetRaw(ctx context.Context, path string) ([]byte, error) {
	return c.rc.Get().AbsPath(path).DoRaw(ctx)
}
