package kube

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

func TestServiceAccountListCopySharesNothing(t *testing.T) {
	l := &ServiceAccountList{Items: []ServiceAccount{{ObjectMeta: metav1.ObjectMeta{Name: "a", Annotations: map[string]string{"k": "1"}}}}}
	c := l.DeepCopyObject().(*ServiceAccountList)
	c.Items[0].Annotations["k"] = "2"
	c.Items[0].Name = "b"
	if l.Items[0].Annotations["k"] != "1" || l.Items[0].Name != "a" {
		t.Fatalf("the copy shares memory with the original: %+v", l.Items[0])
	}
}

// The webhook's informer lists every namespace's ServiceAccounts at the path
// the API server serves (the integration suite runs it against a real one).
func TestListServiceAccounts(t *testing.T) {
	var path, query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, query = r.URL.Path, r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"apiVersion":"v1","kind":"ServiceAccountList","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"app","namespace":"shop","annotations":{"eks.amazonaws.com/role-arn":"arn:aws:iam::1:role/x"}},"secrets":[{"name":"s"}]}]}`)
	}))
	defer srv.Close()
	c, err := NewServiceAccounts(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.ListServiceAccounts(context.Background(), metav1.ListOptions{ResourceVersion: "0"})
	if err != nil || len(l.Items) != 1 || l.ResourceVersion != "7" || l.Items[0].Annotations["eks.amazonaws.com/role-arn"] != "arn:aws:iam::1:role/x" {
		t.Fatalf("ListServiceAccounts: %+v, %v", l, err)
	}
	if path != "/api/v1/serviceaccounts" || query != "resourceVersion=0" {
		t.Errorf("asked %s?%s", path, query)
	}
}
