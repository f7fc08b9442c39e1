package agent

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
)

// The API server leaves spec.serviceAccountName empty only for mirror
// (static) pods; reading it as "default" handed them the default
// ServiceAccount's role.
func TestPodWithoutServiceAccountHasNoRole(t *testing.T) {
	client := fake.NewClientset(
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "default", Annotations: map[string]string{roles.RoleAnnotation: "arn:aws:iam::111111111111:role/default"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", Annotations: map[string]string{roles.AllowedRolesAnnotation: "*"}}},
	)
	r := roles.NewRoleResolver(kubeclientset.Wrap(client), clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour, nil)
	for _, annotation := range []string{"", "arn:aws:iam::111111111111:role/picked"} {
		mirror := podFromObject(&kube.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "etcd-node1", UID: "m1",
				Annotations: map[string]string{roles.PodRoleAnnotation: annotation}},
			Status: kube.PodStatus{Phase: kube.PodRunning, PodIP: "10.0.0.9"},
		})
		key, err := r.Resolve(context.Background(), mirror.Subject())
		var fe *failure.Error
		if !errors.As(err, &fe) || fe.Status != http.StatusNotFound || fe.Code != "NoServiceAccount" {
			t.Fatalf("mirror pod (role annotation %q) resolved to %+v, %v; want 404 NoServiceAccount", annotation, key, err)
		}
		if !strings.Contains(fe.Message, "kube-system/etcd-node1") {
			t.Errorf("refusal %q does not name the pod", fe.Message)
		}
	}
}
