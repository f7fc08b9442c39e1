package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/podcreds/podcreds/failure"
	"github.com/podcreds/podcreds/roles"
)

func review(pod string) string {
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1",
	 "kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
	 "namespace":"ns","operation":"CREATE","object":` + pod + `}}`
}

func newTestHandler(resolve func(context.Context, roles.Pod) error) *handler {
	return &handler{resolve: resolve, settings: testSettings, metrics: NewMetrics(prometheus.NewRegistry()), logger: zap.NewNop()}
}

func post(h http.Handler, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestBadInputIsRefusedWithAMessage(t *testing.T) {
	h := newTestHandler(func(context.Context, roles.Pod) error { return nil })
	for _, tc := range []struct{ name, body, want string }{
		{"an empty body", "", "empty request body"},
		{"malformed JSON", `{"apiVersion":`, "malformed AdmissionReview"},
		{"a review of another version", strings.Replace(review(`{}`), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), "admissionReviewVersions: [v1]"},
		{"another kind", strings.Replace(review(`{}`), `"kind":"AdmissionReview"`, `"kind":"Pod"`, 1), "expected kind AdmissionReview"},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "without a request"},
		{"a review of a Deployment", strings.Replace(review(`{}`), `"kind":"Pod"`, `"kind":"Deployment"`, 1), "core/v1 Pods only"},
		{"an UPDATE", strings.Replace(review(`{}`), "CREATE", "UPDATE", 1), "CREATE only"},
		{"no object", strings.Replace(review(`null`), `,"object":null`, "", 1), "no object"},
		{"a pod of the wrong shape", review(`{"spec":{"containers":"nope"}}`), "malformed pod"},
		{"an oversize body", review(`{"metadata":{"annotations":{"x":"` + strings.Repeat("a", MaxReviewBytes) + `"}}}`), "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(h, tc.body)
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("got %d %q; want 400 mentioning %q", w.Code, w.Body.String(), tc.want)
			}
		})
	}
	if got := testutil.ToFloat64(h.metrics.Admissions.WithLabelValues(ResultBad)); got != 10 {
		t.Errorf("badrequest count %v, want 10", got)
	}
	req := httptest.NewRequest(http.MethodGet, Path, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
	req = httptest.NewRequest(http.MethodPost, Path, strings.NewReader(review(`{}`)))
	req.Header.Set("Content-Type", "text/plain")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", w.Code)
	}
}

func decodeResponse(t *testing.T, w *httptest.ResponseRecorder) (allowed bool, patch string, warnings []string, message string) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	var out struct {
		APIVersion, Kind string
		Response         struct {
			UID       string   `json:"uid"`
			Allowed   bool     `json:"allowed"`
			Patch     []byte   `json:"patch"`
			PatchType string   `json:"patchType"`
			Warnings  []string `json:"warnings"`
			Status    struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response.UID != "u-1" {
		t.Fatalf("response envelope: %s", w.Body.String())
	}
	if len(out.Response.Patch) > 0 && out.Response.PatchType != "JSONPatch" {
		t.Errorf("patchType %q", out.Response.PatchType)
	}
	return out.Response.Allowed, string(out.Response.Patch), out.Response.Warnings, out.Response.Status.Message
}

func TestDecisions(t *testing.T) {
	noRole := failure.Final(http.StatusNotFound, "NoRole", "serviceaccount ns/plain has no role", nil)
	notAllowed := failure.Final(http.StatusForbidden, "RoleNotAllowed", "pod ns/p asks for role x, which namespace ns does not allow", nil)
	down := failure.Retriable("ServiceAccountLookupFailed", "cannot read serviceaccount ns/app", 0, io.ErrUnexpectedEOF)
	var asked roles.Pod
	for _, tc := range []struct {
		name         string
		pod          string
		err          error
		wantInjected bool
		wantWarning  string
		wantStatus   int
		wantAsked    roles.Pod
	}{
		{"a pod with a role is injected", `{"metadata":{"generateName":"web-"},"spec":{"serviceAccountName":"app","containers":[{"name":"a"}]}}`, nil, true, "", 200,
			roles.Pod{Namespace: "ns", Name: "web-<generated>", ServiceAccount: "app"}},
		{"a pod without a ServiceAccount name asks for default", `{"metadata":{"name":"p","annotations":{"podcreds.io/role-arn":" arn:aws:iam::1:role/x "}},"spec":{"containers":[{"name":"a"}]}}`, nil, true, "", 200,
			roles.Pod{Namespace: "ns", Name: "p", ServiceAccount: "default", RoleARN: "arn:aws:iam::1:role/x"}},
		{"a pod without a role is unchanged, silently", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}]}}`, noRole, false, "", 200, roles.Pod{}},
		{"a disallowed role is not injected, with a warning", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}]}}`, notAllowed, false, "does not allow", 200, roles.Pod{}},
		{"an opted-out pod is not even looked up", `{"metadata":{"name":"p","labels":{"podcreds.io/inject":"false"}},"spec":{"containers":[{"name":"a"}]}}`, nil, false, "", 200, roles.Pod{}},
		{"an unreadable ServiceAccount is a 503, for the failurePolicy", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}]}}`, down, false, "", 503, roles.Pod{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = roles.Pod{}
			h := newTestHandler(func(_ context.Context, p roles.Pod) error { asked = p; return tc.err })
			w := post(h, review(tc.pod))
			if tc.wantStatus != 200 {
				if w.Code != tc.wantStatus || !strings.Contains(w.Body.String(), "cannot read serviceaccount ns/app") {
					t.Fatalf("got %d %q", w.Code, w.Body.String())
				}
				return
			}
			allowed, patch, warnings, _ := decodeResponse(t, w)
			if !allowed || (patch != "") != tc.wantInjected {
				t.Errorf("allowed %v, patch %q; want injected %v", allowed, patch, tc.wantInjected)
			}
			if tc.wantWarning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.wantWarning)) {
				t.Errorf("warnings %v, want one mentioning %q", warnings, tc.wantWarning)
			}
			if tc.wantWarning == "" && len(warnings) != 0 {
				t.Errorf("unexpected warnings %v", warnings)
			}
			if tc.wantAsked != (roles.Pod{}) && asked != tc.wantAsked {
				t.Errorf("asked the role decision about %+v, want %+v", asked, tc.wantAsked)
			}
		})
	}
}

func TestRefusalIsADenialWithTheReason(t *testing.T) {
	h := newTestHandler(func(context.Context, roles.Pod) error { return nil })
	w := post(h, review(`{"metadata":{"name":"p","annotations":{"podcreds.io/credentials-endpoint":"http://evil.example/"}},"spec":{"containers":[{"name":"a"}]}}`))
	allowed, _, _, msg := decodeResponse(t, w)
	if allowed || !strings.Contains(msg, "podcreds.io/credentials-endpoint") {
		t.Errorf("allowed %v, message %q", allowed, msg)
	}
}

// FuzzDecodeReview: whatever the body, the decoder returns a request and a
// pod or a *badReview, never panics; and plan never panics on what it
// accepts.
func FuzzDecodeReview(f *testing.F) {
	f.Add(review(fullPod))
	f.Add(review(`{"metadata":{"annotations":{"podcreds.io/skip-containers":"a","podcreds.io/credentials-endpoint":"http://[fd00:ec2::23]/x"}},"spec":{"containers":[{"name":"a"}],"volumes":[{"name":"podcreds-token","projected":{"sources":[{"serviceAccountToken":{"audience":"podcreds","path":"token"}}]}}]}}`))
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}`)
	f.Add(`[]`)
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"initContainers":[{"name":"","env":null}]}}}}`)
	f.Fuzz(func(t *testing.T, body string) {
		req, pod, err := decodeReview(strings.NewReader(body))
		if err != nil {
			if _, ok := err.(*badReview); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if err.Error() == "" {
				t.Fatal("empty message")
			}
			return
		}
		if req == nil || pod == nil || req.UID == "" {
			t.Fatal("accepted without a request, pod or uid")
		}
		_, _, _ = plan(pod, testSettings)
	})
}
