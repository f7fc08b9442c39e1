package agent

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
)

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"arn:aws:iam::111111111111:role/app", "arn:aws:iam::111111111111:role/app", true},
		{"arn:aws:iam::111111111111:role/app", "arn:aws:iam::111111111111:role/app2", false},
		{"arn:aws:iam::111111111111:role/team-a/*", "arn:aws:iam::111111111111:role/team-a/deep/path", true},
		{"arn:aws:iam::111111111111:role/team-a/*", "arn:aws:iam::111111111111:role/team-b/x", false},
		{"arn:aws:iam::*:role/reader", "arn:aws:iam::222222222222:role/reader", true},
		{"arn:aws:iam::*:role/reader", "arn:aws:iam::222222222222:role/readers", false},
		{"*", "anything", true},
		{"", "", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
	} {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func TestAccountOf(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:iam::123456789012:role/app":      "123456789012",
		"arn:aws-cn:iam::123456789012:role/a/b:c": "123456789012",
		"arn:minio:iam:::role/xyz":                "",
		"not-an-arn":                              "",
	} {
		if got := accountOf(arn); got != want {
			t.Errorf("accountOf(%q) = %q, want %q", arn, got, want)
		}
	}
}

func TestRoleResolution(t *testing.T) {
	const roleA, roleB, roleOther = "arn:aws:iam::111111111111:role/a", "arn:aws:iam::111111111111:role/team/b", "arn:aws:iam::999999999999:role/x"
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "open", Annotations: map[string]string{AllowedRolesAnnotation: "arn:aws:iam::111111111111:role/team/*, " + roleOther}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "closed"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "sa", Annotations: map[string]string{
			RoleAnnotation: roleA, AudienceAnnotation: "custom-aud", TokenExpirationAnnotation: "7200"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "plain"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "closed", Name: "sa", Annotations: map[string]string{RoleAnnotation: roleA}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "open", Name: "badexp", Annotations: map[string]string{RoleAnnotation: roleA, TokenExpirationAnnotation: "60"}}},
	)
	r := NewRoleResolver(kubeclientset.Wrap(client), clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour, []string{"111111111111"})
	pod := func(ns, sa, role string) *Pod {
		return &Pod{Namespace: ns, Name: "p", ServiceAccount: sa, RoleARN: role}
	}
	for _, tc := range []struct {
		name     string
		pod      *Pod
		wantRole string
		status   int
	}{
		{"the ServiceAccount's role and annotations are used", pod("open", "sa", ""), roleA, 0},
		{"a pod may pick a role its namespace allows", pod("open", "sa", roleB), roleB, 0},
		{"a pod of a ServiceAccount without a role may pick an allowed role", pod("open", "plain", roleB), roleB, 0},
		{"a role the namespace does not allow is refused, with no fallback", pod("open", "sa", "arn:aws:iam::111111111111:role/admin"), "", http.StatusForbidden},
		{"a namespace without the annotation allows no choice", pod("closed", "sa", roleB), "", http.StatusForbidden},
		{"an allowed role in an account off the allow-list is refused", pod("open", "sa", roleOther), "", http.StatusForbidden},
		{"a ServiceAccount without a role and no choice is 404", pod("open", "plain", ""), "", http.StatusNotFound},
		{"a missing ServiceAccount is 404", pod("open", "ghost", ""), "", http.StatusNotFound},
		{"a token expiration below 10 minutes is a 400 configuration error", pod("open", "badexp", ""), "", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := r.Resolve(context.Background(), tc.pod)
			if tc.status != 0 {
				var fe *failure.Error
				if !errors.As(err, &fe) || fe.Status != tc.status {
					t.Fatalf("got %v, %v; want status %d", key, err, tc.status)
				}
				return
			}
			if err != nil || key.RoleARN != tc.wantRole {
				t.Fatalf("got %+v, %v; want role %s", key, err, tc.wantRole)
			}
			if tc.pod.ServiceAccount == "sa" && (key.Audience != "custom-aud" || key.TokenExpiration != 2*time.Hour) {
				t.Errorf("ServiceAccount annotations not honoured: %+v", key)
			}
		})
	}
}
