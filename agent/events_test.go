package agent

import (
	"net/http"
	"testing"

	"github.com/podcreds/podcreds/podevents"
)

// BenchmarkContainerHitWithEvents is BenchmarkContainerHit with Events on,
// as the agent runs by default: a served request tells the Notifier, which
// costs one atomic load while no pod is failing.
func BenchmarkContainerHitWithEvents(b *testing.B) {
	a, h, _ := newUnitAgent(b)
	// Never run: served requests write nothing, so no client is needed.
	a.opts.Events = podevents.New(podevents.Options{})
	r := hitRequest()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.code = 0
		h.ServeHTTP(w, r)
	}
	if w.code != http.StatusOK {
		b.Fatalf("answered %d", w.code)
	}
}
