package roles

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/internal/testkit/kubeclientset"
)

func TestDecideSaysWhereEachRoleCameFrom(t *testing.T) {
	const app, picked, target = "arn:aws:iam::111111111111:role/app", "arn:aws:iam::111111111111:role/team/b", "arn:aws:iam::222222222222:role/data/r"
	client := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns", Annotations: map[string]string{AllowedRolesAnnotation: "arn:aws:iam::111111111111:role/team/*, arn:aws:iam::222222222222:role/data/*"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "sa", Annotations: map[string]string{RoleAnnotation: app}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "chain", Annotations: map[string]string{RoleAnnotation: app, TargetRoleAnnotation: target}}},
	)
	r := NewRoleResolver(kubeclientset.Wrap(client), clock.RealClock{}, time.Minute, "sts.amazonaws.com", time.Hour, nil)
	for _, tc := range []struct {
		name                                       string
		pod                                        Pod
		roleFrom, rolePattern, targetFrom, pattern string
		code                                       string
	}{
		{"from the ServiceAccount", Pod{Namespace: "ns", Name: "p", ServiceAccount: "sa"}, FromServiceAccount, "", "", "", ""},
		{"from the pod, allowed by a pattern", Pod{Namespace: "ns", Name: "p", ServiceAccount: "sa", RoleARN: picked}, FromPod, "arn:aws:iam::111111111111:role/team/*", "", "", ""},
		{"from the pod, refused", Pod{Namespace: "ns", Name: "p", ServiceAccount: "sa", RoleARN: "arn:aws:iam::111111111111:role/admin"}, FromPod, "", "", "", "RoleNotAllowed"},
		{"a target from the ServiceAccount", Pod{Namespace: "ns", Name: "p", ServiceAccount: "chain"}, FromServiceAccount, "", FromServiceAccount, "arn:aws:iam::222222222222:role/data/*", ""},
		{"a target from the pod", Pod{Namespace: "ns", Name: "p", ServiceAccount: "sa", TargetRoleARN: target}, FromServiceAccount, "", FromPod, "arn:aws:iam::222222222222:role/data/*", ""},
		{"a target outside the patterns", Pod{Namespace: "ns", Name: "p", ServiceAccount: "sa", TargetRoleARN: "arn:aws:iam::222222222222:role/other"}, FromServiceAccount, "", FromPod, "", "TargetRoleNotAllowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Decide(context.Background(), tc.pod)
			code := ""
			if d.Err != nil {
				code = failure.From(d.Err).Code
			}
			if d.RoleFrom != tc.roleFrom || d.RolePattern != tc.rolePattern || d.TargetFrom != tc.targetFrom || d.TargetPattern != tc.pattern || code != tc.code {
				t.Fatalf("decision %+v (code %q)", d, code)
			}
			key, err := r.Resolve(context.Background(), tc.pod)
			if (err == nil) != (d.Err == nil) || (err == nil && key != d.Key) {
				t.Fatalf("Resolve %+v, %v disagrees with Decide %+v", key, err, d)
			}
		})
	}
}
