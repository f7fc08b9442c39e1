package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
)

// The manifests under test, relative to this package.
const (
	deployDir      = "../../deploy"
	deployExample  = "../../deploy/example"
	deployUninstal = "../../deploy/uninstall"
	agentNamespace = "podcreds-system"
	deployManager  = "podcreds-deploy-test"
)

// TestDeployManifestsPassServerSideDryRun renders deploy/, deploy/example/
// and deploy/uninstall/ as `kubectl apply -k` would and has a real API server
// validate and admit every object (dry run, strict field validation, no
// warnings), then checks the properties the agent depends on.
func TestDeployManifestsPassServerSideDryRun(t *testing.T) {
	ctx := ctxT(t)
	for _, dir := range []string{deployDir, deployExample, deployUninstal} {
		t.Run(filepath.Base(dir)+" is admitted by the API server", func(t *testing.T) {
			objs, err := renderKustomization(dir)
			if err != nil {
				t.Fatal(err)
			}
			dryRunAll(ctx, t, objs)
		})
	}

	objs, err := renderKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the ClusterRole grants exactly what the agent calls", func(t *testing.T) {
		var role rbacv1.ClusterRole
		decodeInto(t, mustFind(t, objs, "ClusterRole", "", "podcreds-agent"), &role)
		want := []string{"/namespaces/get", "/nodes/get", "/nodes/patch", "/pods/get", "/pods/list", "/pods/watch", "/serviceaccounts/get", "/serviceaccounts/token/create",
			"events.k8s.io/events/create", "events.k8s.io/events/patch"}
		if got := grants(role.Rules); !slices.Equal(got, want) {
			t.Fatalf("ClusterRole grants\n  %v\nwant exactly\n  %v", got, want)
		}
		for _, r := range role.Rules {
			if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
				t.Fatalf("rule %+v: resourceNames and nonResourceURLs are not expected", r)
			}
		}
		if role.AggregationRule != nil {
			t.Fatal("the ClusterRole must not aggregate other roles")
		}

		var binding rbacv1.ClusterRoleBinding
		decodeInto(t, mustFind(t, objs, "ClusterRoleBinding", "", "podcreds-agent"), &binding)
		mustFind(t, objs, "ServiceAccount", agentNamespace, "podcreds")
		wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: "podcreds", Namespace: agentNamespace}
		if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != "podcreds-agent" ||
			len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject {
			t.Fatalf("binding %+v %+v, want ClusterRole podcreds-agent to %+v", binding.RoleRef, binding.Subjects, wantSubject)
		}
	})
	t.Run("the DaemonSet runs one agent per node as the agent expects", func(t *testing.T) {
		var ds appsv1.DaemonSet
		decodeInto(t, mustFind(t, objs, "DaemonSet", agentNamespace, "podcreds"), &ds)
		checkDaemonSet(t, &ds)
	})

	example, err := renderKustomization(deployExample)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the example workload uses the agent with a projected token", func(t *testing.T) {
		var d appsv1.Deployment
		var sa corev1.ServiceAccount
		decodeInto(t, mustFind(t, example, "Deployment", "podcreds-example", "s3-reader"), &d)
		decodeInto(t, mustFind(t, example, "ServiceAccount", "podcreds-example", d.Spec.Template.Spec.ServiceAccountName), &sa)
		checkExample(t, &d, &sa)
	})
}

func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want the agent only", len(spec.Containers))
	}
	c := spec.Containers[0]
	var problems []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	check(spec.HostNetwork, "hostNetwork must be true")
	check(spec.DNSPolicy == corev1.DNSClusterFirstWithHostNet, "dnsPolicy %q", spec.DNSPolicy)
	check(spec.PriorityClassName == "system-node-critical", "priorityClassName %q", spec.PriorityClassName)
	check(spec.ServiceAccountName == "podcreds", "serviceAccountName %q", spec.ServiceAccountName)
	check(len(spec.Tolerations) == 1 && spec.Tolerations[0] == corev1.Toleration{Operator: corev1.TolerationOpExists},
		"tolerations %+v, want [{operator: Exists}]", spec.Tolerations)
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	// Surge one agent over the old on each node, never leave a node without one.
	check(ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && ru != nil &&
		ru.MaxUnavailable != nil && *ru.MaxUnavailable == intstr.FromInt32(0) &&
		ru.MaxSurge != nil && *ru.MaxSurge == intstr.FromInt32(1), "updateStrategy %+v, want maxSurge 1, maxUnavailable 0", ds.Spec.UpdateStrategy)

	check(len(c.Args) > 0 && c.Args[0] == "agent" && slices.Contains(c.Args, "--log-format=json"), "args %q", c.Args)
	var nodeName *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "NODE_NAME" {
			nodeName = &c.Env[i]
		}
	}
	check(nodeName != nil && nodeName.ValueFrom != nil && nodeName.ValueFrom.FieldRef != nil &&
		nodeName.ValueFrom.FieldRef.FieldPath == "spec.nodeName", "NODE_NAME must come from the downward API's spec.nodeName: %+v", nodeName)

	// During a surge two agents share the health port: each probe must
	// ask its own agent, over the socket in the pod's own emptyDir.
	probe := func(p *corev1.Probe, path string) {
		ok := p != nil && p.Exec != nil && slices.Equal(p.Exec.Command, []string{"/podcreds", "probe", "-path=" + path})
		check(ok, "probe on %s must be exec /podcreds probe -path=%s: %+v", path, path, p)
	}
	probe(c.ReadinessProbe, "/readyz")
	probe(c.LivenessProbe, "/healthz")
	check(slices.Contains(c.Args, "--health-socket=/run/podcreds/health.sock"), "args must serve the probe's socket: %q", c.Args)
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	volumes := map[string]corev1.VolumeSource{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v.VolumeSource
	}
	run, state := volumes[mounts["/run/podcreds"]], volumes[mounts["/var/lib/podcreds"]]
	check(run.EmptyDir != nil, "/run/podcreds must be an emptyDir of the pod's own: %+v", run)
	check(state.HostPath != nil && state.HostPath.Path == "/var/lib/podcreds" && len(spec.Volumes) == 2,
		"/var/lib/podcreds (the node's IMDS token key) must be the only host mount: %+v", spec.Volumes)
	check(slices.Contains(c.Args, "--imds-key-file=/var/lib/podcreds/imds-token.key"), "args must share the IMDS token key: %q", c.Args)

	req, lim := c.Resources.Requests, c.Resources.Limits
	check(req.Cpu().String() == "10m" && req.Memory().String() == "32Mi", "requests %v", req)
	check(lim.Memory().String() == "64Mi", "memory limit %v", lim.Memory())
	_, cpuLimit := lim[corev1.ResourceCPU]
	check(!cpuLimit, "no CPU limit: throttling adds latency on the credential hot path")

	sc, psc := c.SecurityContext, spec.SecurityContext
	check(sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "allowPrivilegeEscalation must be false")
	check(sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem must be true")
	check(sc != nil && (sc.Privileged == nil || !*sc.Privileged), "must not be privileged")
	check(sc != nil && sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) &&
		slices.Equal(slices.Sorted(slices.Values(sc.Capabilities.Add)), []corev1.Capability{"NET_ADMIN", "NET_BIND_SERVICE"}),
		"capabilities %+v, want drop [ALL] add [NET_BIND_SERVICE NET_ADMIN]", sc.Capabilities)
	seccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	seccomp = seccomp || sc != nil && sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	check(seccomp, "seccompProfile must be RuntimeDefault")
	// Added capabilities survive execve() only for uid 0 (see daemonset.yaml).
	var uid *int64
	if psc != nil {
		uid = psc.RunAsUser
	}
	if sc != nil && sc.RunAsUser != nil {
		uid = sc.RunAsUser
	}
	check(uid != nil && *uid == 0, "the capabilities need the process to run as uid 0, got %v", uid)
	if len(problems) > 0 {
		t.Fatalf("DaemonSet podcreds:\n  %s", strings.Join(problems, "\n  "))
	}
}

func checkExample(t *testing.T, d *appsv1.Deployment, sa *corev1.ServiceAccount) {
	t.Helper()
	if sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
		t.Fatalf("ServiceAccount %s has no eks.amazonaws.com/role-arn", sa.Name)
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if got := env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]; got != "http://169.254.170.23/v1/credentials" {
		t.Fatalf("AWS_CONTAINER_CREDENTIALS_FULL_URI %q", got)
	}
	tokenFile := env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, tokenFile)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if tok := s.ServiceAccountToken; tok != nil && tok.Path == rel {
					if tok.Audience != "podcreds" || tok.ExpirationSeconds == nil || *tok.ExpirationSeconds != 3600 {
						t.Fatalf("projected token %+v, want audience podcreds (the agent's --pod-token-audience), expirationSeconds 3600", tok)
					}
					return
				}
			}
		}
	}
	t.Fatalf("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %q is not a projected serviceAccountToken of the container", tokenFile)
}

// TestDeployedAgentPermissionsAreEnough binds deploy/'s ClusterRole for real
// (under unique names) and asks the API server, as the agent's ServiceAccount,
// what it may do: exactly what the agent calls, and nothing that it does not.
func TestDeployedAgentPermissionsAreEnough(t *testing.T) {
	ctx := ctxT(t)
	objs, err := renderKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	suffix := randomSuffix(t)
	ns := "deploy-perms-" + suffix
	if err := env.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	role := mustFind(t, objs, "ClusterRole", "", "podcreds-agent").DeepCopy()
	binding := mustFind(t, objs, "ClusterRoleBinding", "", "podcreds-agent").DeepCopy()
	sa := mustFind(t, objs, "ServiceAccount", agentNamespace, "podcreds").DeepCopy()
	role.SetName("podcreds-agent-" + suffix)
	binding.SetName("podcreds-agent-" + suffix)
	sa.SetNamespace(ns)
	must(t, unstructured.SetNestedField(binding.Object, role.GetName(), "roleRef", "name"))
	subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
	if len(subjects) != 1 {
		t.Fatalf("binding has %d subjects", len(subjects))
	}
	subjects[0].(map[string]any)["namespace"] = ns
	must(t, unstructured.SetNestedSlice(binding.Object, subjects, "subjects"))

	dyn, mapper := dynamicClient(t, env.Config)
	for _, o := range []*unstructured.Unstructured{sa, role, binding} {
		ri := resourceFor(t, dyn, mapper, o)
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: deployManager, Force: true}); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if o.GetNamespace() == "" {
			// Cluster-scoped grants outlive the test's namespace: remove them.
			t.Cleanup(func() { _ = ri.Delete(context.Background(), o.GetName(), metav1.DeleteOptions{}) })
		}
	}

	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.GetName(), &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for the agent's ServiceAccount: %v", err)
	}
	agentClient, err := kubernetes.NewForConfig(&rest.Config{
		Host:            env.APIServerURL,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: env.CACertPEM},
	})
	if err != nil {
		t.Fatal(err)
	}
	can := func(a authorizationv1.ResourceAttributes) bool {
		t.Helper()
		r, err := agentClient.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectAccessReview %+v: %v", a, err)
		}
		return r.Status.Allowed
	}
	// The API server's RBAC authorizer reads bindings from an informer, so a
	// new binding takes effect a moment after it is stored.
	eventually(t, 15*time.Second, "the binding to take effect", func() bool {
		return can(authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"})
	})

	other := "deploy-perms-other-" + suffix
	for _, tc := range []struct {
		attrs authorizationv1.ResourceAttributes
		want  bool
	}{
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "pods", Namespace: other}, true},
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}, true},
		{authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods"}, true},
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "serviceaccounts", Namespace: other}, true},
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "namespaces", Name: other}, true},
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "namespaces"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Resource: "namespaces", Name: other}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: other}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: other}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "events.k8s.io", Resource: "events", Namespace: other}, true},
		{authorizationv1.ResourceAttributes{Verb: "get", Group: "events.k8s.io", Resource: "events", Namespace: other}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Group: "events.k8s.io", Resource: "events", Namespace: other}, false},
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: other}, false},
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: other}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "pods", Namespace: other}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: other}, false},
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "serviceaccounts"}, false},
		{authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}, false},
		// --startup-taint; startup-taint.yaml's policy narrows the patch to
		// one taint of the agent's own node (TestStartupTaintPolicy).
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes", Subresource: "status"}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "nodes"}, false},
	} {
		a := tc.attrs
		name := fmt.Sprintf("%s %s", a.Verb, strings.TrimSuffix(a.Resource+"/"+a.Subresource, "/"))
		if tc.want {
			name = "the agent may " + name
		} else {
			name = "the agent may not " + name
		}
		t.Run(name, func(t *testing.T) {
			if got := can(a); got != tc.want {
				t.Fatalf("SelfSubjectAccessReview %+v: allowed %v, want %v", a, got, tc.want)
			}
		})
	}

	t.Run("the agent can mint a token for any ServiceAccount, as deploy/README.md warns", func(t *testing.T) {
		if _, err := env.CreateServiceAccount(ctx, other, "bystander", nil); err != nil {
			t.Fatal(err)
		}
		_, err := agentClient.CoreV1().ServiceAccounts(other).CreateToken(ctx, "bystander", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: ptr.To[int64](600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest as the agent for %s/bystander: %v", other, err)
		}
		if _, err := agentClient.CoreV1().Secrets(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("listing secrets as the agent: %v, want Forbidden", err)
		}
	})
}

// dryRunAll creates every object with a server-side dry run, after creating
// its namespaces for real (a dry run in a namespace needs the namespace). It
// fails on any error or warning, naming the object.
func dryRunAll(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = warnings
	dyn, mapper := dynamicClient(t, cfg)

	for _, o := range objs {
		if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" {
			// Applied, not created: idempotent when tests run more than once.
			ri := resourceFor(t, dyn, mapper, o)
			if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: deployManager, Force: true}); err != nil {
				t.Fatalf("create Namespace %s: %v", o.GetName(), err)
			}
		}
	}
	if w := warnings.take(); len(w) > 0 {
		t.Fatalf("warnings creating namespaces: %q", w)
	}
	for _, o := range objs {
		id := o.GetKind() + " " + strings.TrimPrefix(o.GetNamespace()+"/"+o.GetName(), "/")
		if o.GetKind() == "Namespace" {
			continue
		}
		ri := resourceFor(t, dyn, mapper, o)
		_, err := ri.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict})
		if err != nil {
			t.Errorf("%s: server-side dry run: %v", id, err)
		}
		if w := warnings.take(); len(w) > 0 {
			t.Errorf("%s: the API server warned: %q", id, w)
		}
	}
}

// warningRecorder collects the API server's Warning headers.
type warningRecorder struct {
	mu  sync.Mutex
	got []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.got
	w.got = nil
	return got
}

func dynamicClient(t *testing.T, cfg *rest.Config) (*dynamic.DynamicClient, meta.RESTMapper) {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dyn, restmapper.NewDiscoveryRESTMapper(groups)
}

// resourceFor maps an object's kind to its resource through discovery. The
// kustomizations set no namespace: field, so every namespaced object must name
// its namespace itself.
func resourceFor(t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, o *unstructured.Unstructured) dynamic.ResourceInterface {
	t.Helper()
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s %s: no such kind on the API server: %v", gvk, o.GetName(), err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		if o.GetNamespace() != "" {
			t.Fatalf("%s %s: cluster-scoped, but names namespace %q", gvk.Kind, o.GetName(), o.GetNamespace())
		}
		return dyn.Resource(m.Resource)
	}
	if o.GetNamespace() == "" {
		t.Fatalf("%s %s: namespaced, but names no namespace", gvk.Kind, o.GetName())
	}
	return dyn.Resource(m.Resource).Namespace(o.GetNamespace())
}

// kustomization is the part of kustomize's Kustomization that deploy/ uses.
// Decoding is strict: a field this reader does not implement fails the test
// instead of being silently ignored, so what the test checks stays what
// `kubectl apply -k` applies.
type kustomization struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Resources  []string         `json:"resources"`
	Images     []kustomizeImage `json:"images"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
	Digest  string `json:"digest"`
}

// renderKustomization returns dir's objects as kustomize would build them:
// the resources in order (files, or directories with a kustomization of their
// own), then the images: overrides.
func renderKustomization(dir string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	js, err := utilyaml.ToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	var k kustomization
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml (this test's reader knows resources and images only): %w", dir, err)
	}
	if k.Kind != "Kustomization" || len(k.Resources) == 0 {
		return nil, fmt.Errorf("%s/kustomization.yaml: kind %q with %d resources", dir, k.Kind, len(k.Resources))
	}
	var objs []*unstructured.Unstructured
	for _, r := range k.Resources {
		path := filepath.Join(dir, r)
		var more []*unstructured.Unstructured
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			more, err = renderKustomization(path)
			if err != nil {
				return nil, err
			}
		} else if more, err = readManifests(path); err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for _, im := range k.Images {
		if n := overrideImages(objs, im); n == 0 {
			return nil, fmt.Errorf("%s/kustomization.yaml: images entry %q matches no container", dir, im.Name)
		}
	}
	return objs, nil
}

// readManifests decodes every YAML document in path; empty ones are skipped.
func readManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, len(objs)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		o := &unstructured.Unstructured{Object: m}
		if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", path, len(objs)+1)
		}
		objs = append(objs, o)
	}
}

// overrideImages applies one images: entry to every container and init
// container of every pod template (or pod), as kustomize's image transformer
// does, and returns how many images it changed.
func overrideImages(objs []*unstructured.Unstructured, im kustomizeImage) int {
	n := 0
	for _, o := range objs {
		podSpec := []string{"spec", "template", "spec"}
		switch o.GetKind() {
		case "Pod":
			podSpec = []string{"spec"}
		case "CronJob":
			podSpec = []string{"spec", "jobTemplate", "spec", "template", "spec"}
		}
		for _, field := range []string{"initContainers", "containers"} {
			containers, found, _ := unstructured.NestedSlice(o.Object, append(podSpec, field)...)
			if !found {
				continue
			}
			for _, c := range containers {
				c := c.(map[string]any)
				image, _ := c["image"].(string)
				if name, rest := splitImage(image); name == im.Name {
					if im.NewName != "" {
						name = im.NewName
					}
					switch {
					case im.Digest != "":
						rest = "@" + im.Digest
					case im.NewTag != "":
						rest = ":" + im.NewTag
					}
					c["image"] = name + rest
					n++
				}
			}
			_ = unstructured.SetNestedSlice(o.Object, containers, append(podSpec, field)...)
		}
	}
	return n
}

// splitImage splits "registry:5000/name:tag@digest" into its name and the
// ":tag@digest" that follows it.
func splitImage(image string) (name, rest string) {
	end := len(image)
	if i := strings.Index(image, "@"); i >= 0 {
		end = i
	}
	if i := strings.LastIndex(image[:end], ":"); i > strings.LastIndex(image[:end], "/") {
		end = i
	}
	return image[:end], image[end:]
}

func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s/%s in the manifests", kind, namespace, name)
	return nil
}

// decodeInto converts o to a typed object, failing on fields the type does not
// have.
func decodeInto(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

// grants expands rules to sorted "group/resource/verb" strings.
func grants(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+"/"+res+"/"+v)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
