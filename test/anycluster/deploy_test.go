package anycluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// TestIssuerManifests creates deploy/issuer's objects on the real API
// server (the Deployment with a dry run) and runs the publisher with a
// token of the ServiceAccount they define, under the Lease name they
// permit: the RBAC is enough to read the issuer, lead and record Events.
func TestIssuerManifests(t *testing.T) {
	ctx := context.Background()
	if err := env.EnsureNamespace(ctx, "podcreds-system"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"serviceaccount.yaml", "rbac.yaml", "deployment.yaml"} {
		for _, obj := range decodeManifest(t, filepath.Join("../../deploy/issuer", f)) {
			var err error
			c := env.Client
			strict := metav1.CreateOptions{FieldValidation: "Strict"}
			switch o := obj.(type) {
			case *corev1.ServiceAccount:
				_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, strict)
			case *rbacv1.ClusterRoleBinding:
				_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, strict)
			case *rbacv1.Role:
				_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, strict)
			case *rbacv1.RoleBinding:
				_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, strict)
			case *appsv1.Deployment:
				if *o.Spec.Replicas != 2 {
					t.Errorf("the Deployment runs %d replicas, want 2", *o.Spec.Replicas)
				}
				strict.DryRun = []string{metav1.DryRunAll}
				_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, strict)
			default:
				t.Fatalf("%s: unexpected object %T", f, obj)
			}
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
	publishOnce(t)
	exp := int64(3600)
	tr, err := env.Client.CoreV1().ServiceAccounts("podcreds-system").CreateToken(ctx, "podcreds-issuer",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "issuer-kubeconfig")
	if err := env.WriteKubeconfig(kc, tr.Status.Token); err != nil {
		t.Fatal(err)
	}
	p := startPublisher(t, "manifest-replica", "podcreds-issuer", "--kubeconfig="+kc)
	waitFor(t, 30*time.Second, "the publisher to lead and sync with the manifests' permissions", func() bool {
		return p.metric("podcreds_issuer_leader") == 1 && p.metric(`podcreds_issuer_syncs_total{result="success"}`) >= 1
	})
	if f := p.metric(`podcreds_issuer_syncs_total{result="failure"}`); f > 0 {
		t.Fatalf("%v syncs failed with the manifests' permissions", f)
	}
}

func decodeManifest(t *testing.T, path string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufioReader(b))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		objs = append(objs, obj)
	}
}
