package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/webhook"
)

const (
	deployWebhook = "../../deploy/webhook"
	// webhookTestLabel confines a test's webhook configuration to that
	// test's namespaces (and kube-system, to prove it is excluded), so the
	// rest of the suite's pods never meet it.
	webhookTestLabel = "podcreds-test/webhook"
)

var webhookSettings = webhook.Settings{Endpoint: "/v1/credentials", TokenAudience: podTokenAudience, TokenExpiration: time.Hour}

// webhookFixture is a running webhook registered with the real API server
// through deploy/webhook's MutatingWebhookConfiguration (its clientConfig
// pointed at 127.0.0.1, its namespaceSelector narrowed to this test), and
// namespaces to create pods in.
type webhookFixture struct {
	t        *testing.T
	suffix   string
	registry *prometheus.Registry
	stop     func()
	// required is labelled podcreds.io/inject=required (fail closed),
	// optional is not labelled (fail open), optedOut podcreds.io/inject=false.
	required, optional, optedOut string
	caPEM                        []byte
}

func startWebhookFixture(t *testing.T) *webhookFixture {
	t.Helper()
	ctx := ctxT(t)
	f := &webhookFixture{t: t, suffix: randomSuffix(t), registry: prometheus.NewRegistry()}
	f.required, f.optional, f.optedOut = "wh-req-"+f.suffix, "wh-opt-"+f.suffix, "wh-out-"+f.suffix
	for ns, labels := range map[string]map[string]string{
		f.required: {webhook.InjectLabel: "required"},
		f.optional: {},
		f.optedOut: {webhook.InjectLabel: "false"},
	} {
		labels[webhookTestLabel] = f.suffix
		_, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
		must(t, err)
		for _, sa := range []struct {
			name string
			ann  map[string]string
		}{{"app", map[string]string{testenv.RoleAnnotation: env.RoleARN}}, {"plain", nil}} {
			_, err := env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa.name, Annotations: sa.ann}}, metav1.CreateOptions{})
			must(t, err)
		}
	}

	certFile, keyFile, caPEM, err := testenv.ServingCert(filepath.Join(t.TempDir(), "tls"))
	must(t, err)
	f.caPEM = caPEM
	srv, err := webhook.New(webhook.Options{
		API: webhookIdentity(ctx, t), Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile,
		Registry: f.registry, Settings: webhookSettings, Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
	})
	must(t, err)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	var once bool
	f.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook Run: %v", err)
		}
	}
	t.Cleanup(f.stop)
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("webhook exited before it was ready: %v", err)
	case <-ctx.Done():
		t.Fatal("webhook not ready")
	}

	cfg := webhookConfiguration(t, "https://"+srv.Addr().String()+webhook.Path, caPEM)
	cfg.Name = "podcreds-test-" + f.suffix
	for i := range cfg.Webhooks {
		sel := cfg.Webhooks[i].NamespaceSelector
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: webhookTestLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{f.suffix}})
	}
	_, err = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	f.waitActive(ctx)
	return f
}

// webhookConfiguration reads deploy/webhook's MutatingWebhookConfiguration
// and points every webhook at url.
func webhookConfiguration(t *testing.T, url string, caPEM []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	objs, err := readManifests(filepath.Join(deployWebhook, "mutatingwebhookconfiguration.yaml"))
	must(t, err)
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	decodeInto(t, mustFind(t, objs, "MutatingWebhookConfiguration", "", "podcreds"), &cfg)
	cfg.Annotations = nil // no cert-manager here: the caBundle is set below
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url), CABundle: caPEM}
	}
	return &cfg
}

// webhookIdentity is the webhook's API access with exactly the permissions
// deploy/webhook grants: its ServiceAccount and ClusterRole are created from
// the manifests and the client uses a token of that ServiceAccount.
func webhookIdentity(ctx context.Context, t *testing.T) kube.ServiceAccounts {
	t.Helper()
	must(t, env.EnsureNamespace(ctx, agentNamespace))
	var objs []*unstructured.Unstructured
	for _, f := range []string{"serviceaccount.yaml", "rbac.yaml"} {
		more, err := readManifests(filepath.Join(deployWebhook, f))
		must(t, err)
		objs = append(objs, more...)
	}
	var sa corev1.ServiceAccount
	decodeInto(t, mustFind(t, objs, "ServiceAccount", agentNamespace, "podcreds-webhook"), &sa)
	var role rbacv1.ClusterRole
	decodeInto(t, mustFind(t, objs, "ClusterRole", "", "podcreds-webhook"), &role)
	var binding rbacv1.ClusterRoleBinding
	decodeInto(t, mustFind(t, objs, "ClusterRoleBinding", "", "podcreds-webhook"), &binding)
	for _, create := range []func() error{
		func() error {
			_, err := env.Client.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, &sa, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &binding, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	tr, err := env.Client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
	must(t, err)
	cfg := &rest.Config{Host: env.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: env.CACertPEM}, QPS: 100, Burst: 200}
	api, err := kube.NewServiceAccounts(cfg)
	must(t, err)
	return api
}

// waitActive waits until the API server calls the new configuration: a
// configuration takes effect once the API server's own informer sees it,
// and nothing announces that, so dry-run creations probe for it.
func (f *webhookFixture) waitActive(ctx context.Context) {
	f.t.Helper()
	probe := testPod("probe", "app", nil, nil, container("a"))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, ns := range []string{f.required, f.optional} {
			got, err := env.Client.CoreV1().Pods(ns).Create(ctx, probe.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil || len(got.Spec.Volumes) == 0 {
				goto again
			}
		}
		return
	again:
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatal("the API server did not call the webhook within 30s of its registration")
}

func container(name string, env ...corev1.EnvVar) corev1.Container {
	return corev1.Container{Name: name, Image: "podcreds.invalid/app:test", Env: env}
}

func testPod(name, sa string, labels, annotations map[string]string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{ServiceAccountName: sa, AutomountServiceAccountToken: ptr.To(false),
			NodeName: "webhook-node", Containers: containers},
	}
}

func (f *webhookFixture) create(ctx context.Context, ns string, pod *corev1.Pod) *corev1.Pod {
	f.t.Helper()
	got, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("create pod %s/%s: %v", ns, pod.Name, err)
	}
	return got
}

func (f *webhookFixture) admissions(result string) float64 {
	return f.metric("podcreds_webhook_admissions_total", "result", result)
}

// metric reads one labelled counter from the webhook's registry.
func (f *webhookFixture) metric(name, label, value string) float64 {
	f.t.Helper()
	mfs, err := f.registry.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	f.t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// wantInjected checks that c has exactly the injected variables after its
// own, and exactly one read-only mount of the token volume after its own.
func wantInjected(t *testing.T, c corev1.Container, ownEnv []corev1.EnvVar, ownMounts int) {
	t.Helper()
	want := append(slices.Clone(ownEnv),
		corev1.EnvVar{Name: "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", Value: "/v1/credentials"},
		corev1.EnvVar{Name: "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", Value: "/var/run/secrets/podcreds/token"})
	if !slices.Equal(c.Env, want) {
		t.Errorf("container %s env\n  %v\nwant\n  %v", c.Name, c.Env, want)
	}
	wantMount := corev1.VolumeMount{Name: "podcreds-token", MountPath: "/var/run/secrets/podcreds", ReadOnly: true}
	if len(c.VolumeMounts) != ownMounts+1 || c.VolumeMounts[ownMounts] != wantMount {
		t.Errorf("container %s mounts %+v; want its own %d then %+v", c.Name, c.VolumeMounts, ownMounts, wantMount)
	}
}

func wantUntouched(t *testing.T, got corev1.Container, sent corev1.Container) {
	t.Helper()
	if !slices.Equal(got.Env, sent.Env) || len(got.VolumeMounts) != len(sent.VolumeMounts) {
		t.Errorf("container %s was changed: env %v, mounts %v", got.Name, got.Env, got.VolumeMounts)
	}
}

func wantTokenVolume(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	var found []corev1.Volume
	for _, v := range pod.Spec.Volumes {
		if v.Name == "podcreds-token" {
			found = append(found, v)
		}
	}
	if len(found) != 1 || found[0].Projected == nil || len(found[0].Projected.Sources) != 1 || found[0].Projected.Sources[0].ServiceAccountToken == nil {
		t.Fatalf("pod %s volumes %+v; want exactly one projected token volume podcreds-token", pod.Name, pod.Spec.Volumes)
	}
	tok := found[0].Projected.Sources[0].ServiceAccountToken
	if tok.Audience != podTokenAudience || tok.Path != "token" || tok.ExpirationSeconds == nil || *tok.ExpirationSeconds != 3600 {
		t.Errorf("token volume %+v; want audience %s, path token, 3600 s", tok, podTokenAudience)
	}
}

// TestWebhookInjectsThroughTheAPIServer: the real API server calls the
// webhook over TLS, as deploy/webhook registers it, on pod creation.
func TestWebhookInjectsThroughTheAPIServer(t *testing.T) {
	ctx := ctxT(t)
	f := startWebhookFixture(t)
	keep := corev1.EnvVar{Name: "KEEP", Value: "1"}

	t.Run("a pod whose ServiceAccount has a role gets exactly the variables, volume and mounts in every container and init container", func(t *testing.T) {
		for _, ns := range []string{f.required, f.optional} {
			p := testPod("full", "app", nil, nil, container("main", keep), container("sidecar"))
			p.Spec.InitContainers = []corev1.Container{container("init")}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
			p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			got := f.create(ctx, ns, p)
			wantInjected(t, got.Spec.InitContainers[0], nil, 0)
			wantInjected(t, got.Spec.Containers[0], []corev1.EnvVar{keep}, 1)
			wantInjected(t, got.Spec.Containers[1], nil, 0)
			wantTokenVolume(t, got)
			if len(got.Spec.Volumes) != 2 || got.Spec.Volumes[0].Name != "data" {
				t.Errorf("the pod's own volume was disturbed: %+v", got.Spec.Volumes)
			}
		}
	})

	t.Run("a pod without a role is unchanged", func(t *testing.T) {
		sent := container("main")
		got := f.create(ctx, f.required, testPod("norole", "plain", nil, nil, sent))
		wantUntouched(t, got.Spec.Containers[0], sent)
		if len(got.Spec.Volumes) != 0 {
			t.Errorf("volumes %+v", got.Spec.Volumes)
		}
	})

	t.Run("a container that sets its own AWS variables is unchanged", func(t *testing.T) {
		own := container("own", corev1.EnvVar{Name: "AWS_ACCESS_KEY_ID", Value: "AKIAEXAMPLE"}, corev1.EnvVar{Name: "AWS_SECRET_ACCESS_KEY", Value: "x"})
		irsa := container("irsa", corev1.EnvVar{Name: "AWS_ROLE_ARN", Value: env.RoleARN}, corev1.EnvVar{Name: "AWS_WEB_IDENTITY_TOKEN_FILE", Value: "/t"})
		ecs := container("ecs", corev1.EnvVar{Name: "AWS_CONTAINER_CREDENTIALS_FULL_URI", Value: "http://127.0.0.1:9/creds"})
		got := f.create(ctx, f.required, testPod("ownvars", "app", nil, nil, own, irsa, ecs, container("plain")))
		wantUntouched(t, got.Spec.Containers[0], own)
		wantUntouched(t, got.Spec.Containers[1], irsa)
		wantUntouched(t, got.Spec.Containers[2], ecs)
		wantInjected(t, got.Spec.Containers[3], nil, 0)
	})

	t.Run("skip-containers leaves the named containers alone", func(t *testing.T) {
		got := f.create(ctx, f.required, testPod("skip", "app", nil, map[string]string{webhook.SkipContainersAnnotation: "proxy"}, container("app"), container("proxy")))
		wantInjected(t, got.Spec.Containers[0], nil, 0)
		wantUntouched(t, got.Spec.Containers[1], container("proxy"))
	})

	t.Run("the opt-out label on a pod or its namespace leaves it alone", func(t *testing.T) {
		before := f.admissions(webhook.ResultUnchanged) + f.admissions(webhook.ResultInjected)
		for _, c := range []struct {
			ns     string
			labels map[string]string
		}{{f.required, map[string]string{webhook.InjectLabel: "false"}}, {f.optional, map[string]string{webhook.InjectLabel: "false"}}, {f.optedOut, nil}} {
			sent := container("main")
			got := f.create(ctx, c.ns, testPod("optout-"+randomSuffix(t), "app", c.labels, nil, sent))
			wantUntouched(t, got.Spec.Containers[0], sent)
			if len(got.Spec.Volumes) != 0 {
				t.Errorf("%s: volumes %+v", c.ns, got.Spec.Volumes)
			}
		}
		if after := f.admissions(webhook.ResultUnchanged) + f.admissions(webhook.ResultInjected); after != before {
			t.Errorf("opted-out pods were sent to the webhook (%v admissions); the configuration's selectors should keep them away", after-before)
		}
	})

	t.Run("a second invocation changes nothing", func(t *testing.T) {
		// A later webhook that changes the pod makes the API server run
		// ours again (reinvocationPolicy: IfNeeded).
		touch := touchWebhook(ctx, t, f)
		injected, unchanged := f.admissions(webhook.ResultInjected), f.admissions(webhook.ResultUnchanged)
		p := testPod("twice", "app", map[string]string{"touch": f.suffix}, nil, container("main"))
		p.Spec.InitContainers = []corev1.Container{container("init")}
		got := f.create(ctx, f.required, p)
		if got.Annotations["podcreds-test/touched"] != "yes" || touch.calls.Load() == 0 {
			t.Fatal("the touching webhook did not run")
		}
		if d := f.admissions(webhook.ResultInjected) - injected; d != 1 {
			t.Errorf("%v injections, want 1", d)
		}
		if d := f.admissions(webhook.ResultUnchanged) - unchanged; d != 1 {
			t.Errorf("%v unchanged answers, want 1 (the reinvocation)", d)
		}
		wantInjected(t, got.Spec.InitContainers[0], nil, 0)
		wantInjected(t, got.Spec.Containers[0], nil, 0)
		wantTokenVolume(t, got)
	})
}

// touchWebhook registers a second webhook, after podcreds' by name, that
// annotates pods labelled touch=<suffix>.
func touchWebhook(ctx context.Context, t *testing.T, f *webhookFixture) *touchServer {
	t.Helper()
	ts := &touchServer{}
	srv := httptest.NewUnstartedServer(ts)
	certFile, keyFile, caPEM, err := testenv.ServingCert(filepath.Join(t.TempDir(), "touch"))
	must(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	must(t, err)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-podcreds-test-touch-" + f.suffix},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "touch.podcreds.test", AdmissionReviewVersions: []string{"v1"},
			SideEffects:    ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:  ptr.To(admissionregistrationv1.Fail),
			ClientConfig:   admissionregistrationv1.WebhookClientConfig{URL: ptr.To(srv.URL + "/"), CABundle: caPEM},
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"touch": f.suffix}},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
		}},
	}
	_, err = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	probe := testPod("touch-probe", "plain", map[string]string{"touch": f.suffix}, nil, container("a"))
	deadline := time.Now().Add(30 * time.Second)
	for ts.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the API server did not call the touching webhook within 30s")
		}
		_, _ = env.Client.CoreV1().Pods(f.optional).Create(ctx, probe.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		time.Sleep(50 * time.Millisecond)
	}
	return ts
}

// TestWebhookSeesAServiceAccountAnnotatedJustBefore: a ServiceAccount
// created, or annotated, immediately before its pod (no wait) still gets the
// pod injected, whatever the webhook's informer has seen yet.
func TestWebhookSeesAServiceAccountAnnotatedJustBefore(t *testing.T) {
	ctx := ctxT(t)
	f := startWebhookFixture(t)
	for i := range 10 {
		created := fmt.Sprintf("created-%d", i)
		_, err := env.Client.CoreV1().ServiceAccounts(f.required).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Name: created, Annotations: map[string]string{testenv.RoleAnnotation: env.RoleARN}}}, metav1.CreateOptions{})
		must(t, err)
		got := f.create(ctx, f.required, testPod(created, created, nil, nil, container("main")))
		wantInjected(t, got.Spec.Containers[0], nil, 0)

		annotated := fmt.Sprintf("annotated-%d", i)
		sa, err := env.Client.CoreV1().ServiceAccounts(f.required).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: annotated}}, metav1.CreateOptions{})
		must(t, err)
		sa.Annotations = map[string]string{testenv.RoleAnnotation: env.RoleARN}
		_, err = env.Client.CoreV1().ServiceAccounts(f.required).Update(ctx, sa, metav1.UpdateOptions{})
		must(t, err)
		got = f.create(ctx, f.required, testPod(annotated, annotated, nil, nil, container("main")))
		wantInjected(t, got.Spec.Containers[0], nil, 0)
	}
	// How often the informer lagged is the machine's business; that the
	// answer never depends on it is the point (webhook:
	// TestServiceAccountsReadLiveWhereTheInformerMayLag pins the fallback).
	t.Logf("ServiceAccount reads: %v from the informer, %v live",
		f.metric("podcreds_webhook_serviceaccount_reads_total", "source", "informer"),
		f.metric("podcreds_webhook_serviceaccount_reads_total", "source", "live"))
}

// TestWebhookOutage: with the webhook down, pods in namespaces that opted
// in to fail closed are refused with a message naming the webhook; pods in
// kube-system (labelled like the test's namespaces, so only the exclusion
// protects them) and in other namespaces are created.
func TestWebhookOutage(t *testing.T) {
	ctx := ctxT(t)
	f := startWebhookFixture(t)
	ks, err := env.Client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	must(t, err)
	ks.Labels[webhookTestLabel] = f.suffix
	ks.Labels[webhook.InjectLabel] = "required"
	_, err = env.Client.CoreV1().Namespaces().Update(ctx, ks, metav1.UpdateOptions{})
	must(t, err)
	t.Cleanup(func() {
		ks, err := env.Client.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{})
		if err == nil {
			delete(ks.Labels, webhookTestLabel)
			delete(ks.Labels, webhook.InjectLabel)
			_, _ = env.Client.CoreV1().Namespaces().Update(context.Background(), ks, metav1.UpdateOptions{})
		}
	})
	_, err = env.Client.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Name: "wh-" + f.suffix, Annotations: map[string]string{testenv.RoleAnnotation: env.RoleARN}}}, metav1.CreateOptions{})
	must(t, err)

	f.stop()

	_, err = env.Client.CoreV1().Pods(f.required).Create(ctx, testPod("refused", "app", nil, nil, container("main")), metav1.CreateOptions{})
	if err == nil {
		t.Fatal("a pod in a fail-closed namespace was created while the webhook was down")
	}
	if msg := err.Error(); !strings.Contains(msg, "required.webhook.podcreds.io") || !strings.Contains(msg, "failed calling webhook") {
		t.Errorf("refusal %q does not say which webhook failed", msg)
	}
	sent := container("main")
	got := f.create(ctx, "kube-system", testPod("wh-"+f.suffix, "wh-"+f.suffix, nil, nil, sent))
	wantUntouched(t, got.Spec.Containers[0], sent)
	got = f.create(ctx, f.optional, testPod("open", "app", nil, nil, sent))
	wantUntouched(t, got.Spec.Containers[0], sent)
	_ = env.Client.CoreV1().Pods("kube-system").Delete(context.Background(), "wh-"+f.suffix, metav1.DeleteOptions{})
}

// TestWebhookManifestsPassServerSideDryRun: deploy/webhook, after deploy/,
// is admitted by the API server, and says what the docs promise.
func TestWebhookManifestsPassServerSideDryRun(t *testing.T) {
	ctx := ctxT(t)
	base, err := renderKustomization(deployDir)
	must(t, err)
	objs, err := renderKustomization(deployWebhook)
	must(t, err)
	var namespaces []*unstructured.Unstructured
	for _, o := range base {
		if o.GetKind() == "Namespace" {
			namespaces = append(namespaces, o)
		}
	}
	// The identity objects may already exist (the other webhook tests
	// create them from these manifests): dry-run them under a fresh name.
	suffix := "-dryrun-" + randomSuffix(t)
	var probe []*unstructured.Unstructured
	for _, o := range objs {
		o = o.DeepCopy()
		if name := o.GetName(); name == "podcreds-webhook" && (o.GetKind() == "ServiceAccount" || o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding") {
			o.SetName(name + suffix)
			if o.GetKind() == "ClusterRoleBinding" {
				must(t, unstructured.SetNestedField(o.Object, "podcreds-webhook"+suffix, "roleRef", "name"))
				subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
				for _, s := range subjects {
					s.(map[string]any)["name"] = "podcreds-webhook" + suffix
				}
				must(t, unstructured.SetNestedSlice(o.Object, subjects, "subjects"))
			}
		}
		probe = append(probe, o)
	}
	dryRunAll(ctx, t, append(namespaces, probe...))

	var d appsv1.Deployment
	decodeInto(t, mustFind(t, objs, "Deployment", agentNamespace, "podcreds-webhook"), &d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Containers[0].ReadinessProbe == nil {
		t.Errorf("deployment: %v replicas, readiness %v", d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].ReadinessProbe)
	}
	var pdb policyv1.PodDisruptionBudget
	decodeInto(t, mustFind(t, objs, "PodDisruptionBudget", agentNamespace, "podcreds-webhook"), &pdb)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 1", pdb.Spec.MinAvailable)
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	decodeInto(t, mustFind(t, objs, "MutatingWebhookConfiguration", "", "podcreds"), &cfg)
	policies := map[string]admissionregistrationv1.FailurePolicyType{}
	for _, w := range cfg.Webhooks {
		policies[w.Name] = *w.FailurePolicy
		if *w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			t.Errorf("%s: sideEffects %v, reinvocationPolicy %v", w.Name, *w.SideEffects, *w.ReinvocationPolicy)
		}
		excluded := false
		for _, e := range w.NamespaceSelector.MatchExpressions {
			if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpNotIn &&
				slices.Contains(e.Values, "kube-system") && slices.Contains(e.Values, agentNamespace) {
				excluded = true
			}
		}
		if !excluded {
			t.Errorf("%s does not exclude kube-system and %s", w.Name, agentNamespace)
		}
	}
	if policies["required.webhook.podcreds.io"] != admissionregistrationv1.Fail || policies["optional.webhook.podcreds.io"] != admissionregistrationv1.Ignore {
		t.Errorf("failure policies %v", policies)
	}
}

// touchServer is a minimal mutating webhook: it annotates every pod it is
// sent.
type touchServer struct{ calls atomic.Int64 }

func (s *touchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	s.calls.Add(1)
	var pod struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(review.Request.Object.Raw, &pod)
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if pod.Metadata.Annotations["podcreds-test/touched"] == "" {
		op := `[{"op":"add","path":"/metadata/annotations","value":{"podcreds-test/touched":"yes"}}]`
		if pod.Metadata.Annotations != nil {
			op = `[{"op":"add","path":"/metadata/annotations/podcreds-test~1touched","value":"yes"}]`
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = []byte(op), &pt
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}
