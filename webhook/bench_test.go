package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/podcreds/podcreds/roles"
)

// BenchmarkAdmission is one review of a pod with an init container and two
// containers, decided and patched, through the handler (the role decision
// answered at once, as from the informer).
func BenchmarkAdmission(b *testing.B) {
	h := newTestHandler(func(context.Context, roles.Pod) error { return nil })
	body := review(fullPod)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
