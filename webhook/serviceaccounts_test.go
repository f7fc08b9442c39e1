package webhook

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/roles"
)

// liveAPI is the API server as the webhook's fallback sees it: what a live
// GET returns now, whatever the informer holds.
type liveAPI struct {
	now  map[string]*kube.ServiceAccount
	gets int
}

func (a *liveAPI) GetServiceAccount(_ context.Context, namespace, name string) (*kube.ServiceAccount, error) {
	a.gets++
	if sa, ok := a.now[namespace+"/"+name]; ok {
		return sa, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccounts"}, name)
}

func (a *liveAPI) GetNamespace(context.Context, string) (*kube.Namespace, error) {
	return &kube.Namespace{}, nil
}

func (a *liveAPI) ListServiceAccounts(context.Context, metav1.ListOptions) (*kube.ServiceAccountList, error) {
	return &kube.ServiceAccountList{}, nil
}

func (a *liveAPI) WatchServiceAccounts(context.Context, metav1.ListOptions) (watch.Interface, error) {
	return watch.NewFake(), nil
}

func sa(name, role string) *kube.ServiceAccount {
	s := &kube.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	if role != "" {
		s.Annotations = map[string]string{roles.RoleAnnotation: role}
	}
	return s
}

func TestServiceAccountsReadLiveWhereTheInformerMayLag(t *testing.T) {
	const role = "arn:aws:iam::111111111111:role/app"
	api := &liveAPI{now: map[string]*kube.ServiceAccount{
		"ns/known":     sa("known", role),
		"ns/new":       sa("new", role), // created a moment ago: not in the informer yet
		"ns/annotated": sa("annotated", role),
		"ns/plain":     sa("plain", ""),
	}}
	s := newServiceAccounts(api, NewMetrics(prometheus.NewRegistry()))
	store := s.informer.GetStore()
	_ = store.Add(sa("known", role))
	_ = store.Add(sa("annotated", "")) // the informer has not seen the annotation yet
	_ = store.Add(sa("plain", ""))
	for _, tc := range []struct {
		name     string
		wantRole string
		wantGets int
	}{
		{"known", role, 0},
		{"new", role, 1},
		{"annotated", role, 1},
		{"plain", "", 1},
	} {
		before := api.gets
		got, err := s.GetServiceAccount(context.Background(), "ns", tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got.Annotations[roles.RoleAnnotation] != tc.wantRole || api.gets-before != tc.wantGets {
			t.Errorf("%s: role %q after %d live reads; want %q after %d", tc.name, got.Annotations[roles.RoleAnnotation], api.gets-before, tc.wantRole, tc.wantGets)
		}
	}
}
