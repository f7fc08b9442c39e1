package roles

import (
	"context"
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
)

func TestTargetRolesFollowTheNamespacePolicy(t *testing.T) {
	const (
		first   = "arn:aws:iam::111111111111:role/app"
		allowed = "arn:aws:iam::222222222222:role/data/reader"
		outside = "arn:aws:iam::222222222222:role/admin"
		foreign = "arn:aws:iam::999999999999:role/data/reader"
	)
	sa := func(ns, name string, ann map[string]string) *corev1.ServiceAccount {
		a := map[string]string{RoleAnnotation: first}
		for k, v := range ann {
			a[k] = v
		}
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: a}}
	}
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "abac", Annotations: map[string]string{
			AllowedRolesAnnotation: "arn:aws:iam::222222222222:role/data/*, arn:aws:iam::999999999999:role/data/*"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "closed"}},
		sa("abac", "tagged", map[string]string{TargetRoleAnnotation: allowed, SessionNameAnnotation: "kafka-client", ExternalIDAnnotation: "tenant-42"}),
		sa("abac", "wide", map[string]string{TargetRoleAnnotation: outside}),
		sa("abac", "foreign", map[string]string{TargetRoleAnnotation: foreign}),
		sa("abac", "plain", nil),
		sa("closed", "tagged", map[string]string{TargetRoleAnnotation: allowed}),
		sa("abac", "badarn", map[string]string{TargetRoleAnnotation: "role/data/reader"}),
		sa("abac", "badname", map[string]string{SessionNameAnnotation: "has space"}),
		sa("abac", "badext", map[string]string{ExternalIDAnnotation: "x"}),
	)
	r := NewRoleResolver(kubeclientset.Wrap(client), clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour,
		[]string{"111111111111", "222222222222"})
	pod := func(ns, sa string) Pod { return Pod{Namespace: ns, Name: "p", ServiceAccount: sa} }

	t.Run("an allowed target role, session name and external id reach the key", func(t *testing.T) {
		key, err := r.Resolve(context.Background(), pod("abac", "tagged"))
		if err != nil {
			t.Fatal(err)
		}
		if key.RoleARN != first || key.TargetRoleARN != allowed || key.SessionName != "kafka-client" || key.ExternalID != "tenant-42" {
			t.Errorf("key = %+v", key)
		}
		if key.ServedRoleARN() != allowed {
			t.Errorf("served role %s, want the target", key.ServedRoleARN())
		}
	})
	t.Run("a pod may name its own target role under the same policy", func(t *testing.T) {
		p := pod("abac", "plain")
		p.TargetRoleARN = allowed
		key, err := r.Resolve(context.Background(), p)
		if err != nil || key.TargetRoleARN != allowed {
			t.Fatalf("key %+v, err %v", key, err)
		}
		p.TargetRoleARN = outside
		if _, err := r.Resolve(context.Background(), p); failure.From(err).Code != "TargetRoleNotAllowed" {
			t.Errorf("pod's disallowed target: %v", err)
		}
	})
	refusals := []struct {
		name, ns, sa string
		status       int
		code         string
	}{
		{"a target role outside the namespace's patterns is refused", "abac", "wide", http.StatusForbidden, "TargetRoleNotAllowed"},
		{"a target role in a namespace without patterns is refused", "closed", "tagged", http.StatusForbidden, "TargetRoleNotAllowed"},
		{"a target role outside the account allow-list is refused", "abac", "foreign", http.StatusForbidden, "AccountNotAllowed"},
		{"a target role that is not an ARN is refused", "abac", "badarn", http.StatusBadRequest, "InvalidTargetRole"},
		{"a session name STS would refuse is refused", "abac", "badname", http.StatusBadRequest, "InvalidSessionName"},
		{"an external id STS would refuse is refused", "abac", "badext", http.StatusBadRequest, "InvalidExternalID"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			key, err := r.Resolve(context.Background(), pod(tc.ns, tc.sa))
			fe := failure.From(err)
			if err == nil || fe.Status != tc.status || fe.Code != tc.code || fe.Retriable() {
				t.Fatalf("got key %+v, err %v; want final %d %s", key, err, tc.status, tc.code)
			}
			if !strings.Contains(fe.Message, tc.sa) && !strings.Contains(fe.Message, "role") {
				t.Errorf("message does not say what is wrong: %q", fe.Message)
			}
		})
	}
}

func FuzzCheckExternalID(f *testing.F) {
	f.Add("tenant-42")
	f.Add("a")
	f.Fuzz(func(t *testing.T, s string) {
		err := checkExternalID(s)
		ok := len(s) >= 2 && len(s) <= 1224
		for _, r := range s {
			if !(r < 128 && (r == '_' || r == '+' || r == '=' || r == ',' || r == '.' || r == '@' || r == ':' || r == '/' || r == '-' ||
				'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')) {
				ok = false
			}
		}
		if (err == nil) != ok {
			t.Fatalf("checkExternalID(%q) = %v, want ok=%v", s, err, ok)
		}
	})
}
