// Package kube is the slice of the Kubernetes API the agent uses — pods on
// its node, ServiceAccounts, namespaces, TokenRequest and the startup taint
// of its node (nodes.go) — over one REST client that knows only those types
// (types.go) and TokenRequest.
//
// It exists for the agent's footprint: the generated clientset registers
// every API group of Kubernetes at start-up and links their clients, and
// k8s.io/api/core/v1 alone is a fifth of what remains. Mapped binary pages
// are most of the agent's resident memory (bench/scale's memory scenario),
// and the agent needs five calls.
package kube

import (
	"context"
	"fmt"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client is what the agent asks of the API server.
type Client interface {
	GetServiceAccount(ctx context.Context, namespace, name string) (*ServiceAccount, error)
	GetNamespace(ctx context.Context, name string) (*Namespace, error)
	ListPods(ctx context.Context, opts metav1.ListOptions) (*PodList, error)
	WatchPods(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// CreateToken is the TokenRequest API: a token for the ServiceAccount,
	// with the audiences, lifetime and pod binding of req.
	CreateToken(ctx context.Context, namespace, serviceAccount string, req *authnv1.TokenRequest) (*authnv1.TokenRequest, error)
	// GetRaw reads a non-resource path of the API server, such as its OIDC
	// discovery document.
	GetRaw(ctx context.Context, path string) ([]byte, error)
}

var (
	coreV1         = schema.GroupVersion{Version: "v1"}
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	// The core group's version "v1" holds both the agent's views of core
	// objects and the option types (ListOptions, …) as query parameters,
	// as the generated clientset registers them.
	metav1.AddToGroupVersion(scheme, coreV1)
	scheme.AddKnownTypes(coreV1, &Pod{}, &PodList{}, &ServiceAccount{}, &Namespace{})
	if err := authnv1.AddToScheme(scheme); err != nil {
		panic(fmt.Sprintf("kube: registering API types: %v", err))
	}
}

// New returns a Client for cfg (whose QPS, Burst, UserAgent and credentials
// it keeps). It speaks JSON, which decodes into the views without the
// protobuf code of the full types.
func New(cfg *rest.Config) (Client, error) {
	c := rest.CopyConfig(cfg)
	gv := coreV1
	c.GroupVersion = &gv
	c.APIPath = "/api"
	c.NegotiatedSerializer = codecs.WithoutConversion()
	c.ContentType, c.AcceptContentTypes = runtime.ContentTypeJSON, runtime.ContentTypeJSON
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

func (c *restClient) GetServiceAccount(ctx context.Context, namespace, name string) (*ServiceAccount, error) {
	out := &ServiceAccount{}
	err := c.rc.Get().Namespace(namespace).Resource("serviceaccounts").Name(name).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) GetNamespace(ctx context.Context, name string) (*Namespace, error) {
	out := &Namespace{}
	err := c.rc.Get().Resource("namespaces").Name(name).Do(ctx).Into(out)
	return out, err
}

func (c *restClient) ListPods(ctx context.Context, opts metav1.ListOptions) (*PodList, error) {
	out := &PodList{}
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
