package kube

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

func fullPod() *corev1.Pod {
	now := metav1.Now()
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: types.UID("u-1"), ResourceVersion: "42",
			DeletionTimestamp: &now, Labels: map[string]string{"app": "web"},
			Annotations:   map[string]string{"podcreds.io/role-arn": "arn:aws:iam::111111111111:role/web", "other": "x"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "app", HostNetwork: true,
			Containers: []corev1.Container{{Name: "c", Image: "img", Env: []corev1.EnvVar{{Name: "A", Value: "B"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7", PodIPs: []corev1.PodIP{{IP: "10.0.0.7"}, {IP: "fd00::7"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// The views read exactly the fields of the real objects they name.
func TestPodViewDecodesTheAPIsJSON(t *testing.T) {
	b, err := json.Marshal(fullPod())
	if err != nil {
		t.Fatal(err)
	}
	obj, gvk, err := codecs.UniversalDeserializer().Decode(b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := obj.(*Pod)
	if !ok || gvk.Kind != "Pod" {
		t.Fatalf("decoded %T (%v), want *kube.Pod", obj, gvk)
	}
	if p.Name != "web" || p.Namespace != "shop" || p.UID != "u-1" || p.ResourceVersion != "42" || p.DeletionTimestamp == nil ||
		p.Annotations["podcreds.io/role-arn"] != "arn:aws:iam::111111111111:role/web" {
		t.Errorf("metadata: %+v", p.ObjectMeta)
	}
	if p.Spec != (PodSpec{NodeName: "n1", ServiceAccountName: "app", HostNetwork: true}) {
		t.Errorf("spec: %+v", p.Spec)
	}
	if p.Status.Phase != PodRunning || p.Status.PodIP != "10.0.0.7" || len(p.Status.PodIPs) != 2 || p.Status.PodIPs[1].IP != "fd00::7" {
		t.Errorf("status: %+v", p.Status)
	}
}

func TestDeepCopySharesNothing(t *testing.T) {
	b, _ := json.Marshal(fullPod())
	var p Pod
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	list := &PodList{Items: []Pod{p}}
	c := list.DeepCopyObject().(*PodList)
	c.Items[0].Annotations["other"] = "changed"
	c.Items[0].Status.PodIPs[0].IP = "10.9.9.9"
	c.Items[0].DeletionTimestamp.Time = c.Items[0].DeletionTimestamp.Add(1)
	if p.Annotations["other"] != "x" || p.Status.PodIPs[0].IP != "10.0.0.7" || !list.Items[0].DeletionTimestamp.Equal(p.DeletionTimestamp) {
		t.Fatalf("the copy shares memory with the original: %+v", p)
	}
	sa := &ServiceAccount{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"a": "1"}}}
	sa.DeepCopyObject().(*ServiceAccount).Annotations["a"] = "2"
	ns := &Namespace{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"a": "1"}}}
	ns.DeepCopyObject().(*Namespace).Annotations["a"] = "2"
	if sa.Annotations["a"] != "1" || ns.Annotations["a"] != "1" {
		t.Fatal("ServiceAccount or Namespace copy shares its annotations")
	}
}

// The client asks the paths and bodies the API server serves, as the
// generated clientset would (the integration suite runs it against a real
// kube-apiserver; this pins the wire form).
func TestClientRequests(t *testing.T) {
	type seen struct{ method, path, query, body string }
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.Method, r.URL.Path, r.URL.RawQuery, string(b)})
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/namespaces/shop/serviceaccounts/app/token":
			_, _ = io.WriteString(w, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","status":{"token":"tok","expirationTimestamp":"2026-01-01T00:00:00Z"}}`)
		case "/api/v1/namespaces/shop/serviceaccounts/missing":
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404,"message":"serviceaccounts \"missing\" not found"}`)
		case "/api/v1/pods":
			_, _ = io.WriteString(w, `{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"a","namespace":"shop"},"status":{"podIP":"10.0.0.1"}}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := New(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	secs := int64(3600)
	tr, err := c.CreateToken(ctx, "shop", "app", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}, ExpirationSeconds: &secs}})
	if err != nil || tr.Status.Token != "tok" {
		t.Fatalf("CreateToken: %+v, %v", tr, err)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(got[0].body), &body); err != nil || got[0].method != http.MethodPost ||
		body["apiVersion"] != "authentication.k8s.io/v1" || body["kind"] != "TokenRequest" {
		t.Errorf("TokenRequest sent as %+v", got[0])
	}
	if _, err := c.GetServiceAccount(ctx, "shop", "missing"); !apierrors.IsNotFound(err) {
		t.Errorf("missing ServiceAccount: %v, want a NotFound status error", err)
	}
	list, err := c.ListPods(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1", ResourceVersion: "0"})
	if err != nil || len(list.Items) != 1 || list.Items[0].Status.PodIP != "10.0.0.1" || list.ResourceVersion != "9" {
		t.Fatalf("ListPods: %+v, %v", list, err)
	}
	if q := got[len(got)-1].query; q != "fieldSelector=spec.nodeName%3Dn1&resourceVersion=0" {
		t.Errorf("ListPods query %q", q)
	}
}
