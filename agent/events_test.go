package agent

import (
	"context"
	"net/http"
	"testing"

	"github.com/podcreds/podcreds/kube"
	"github.com/podcreds/podcreds/podevents"
)

// discardEvents accepts every Event and keeps none.
type discardEvents struct{}

func (discardEvents) CreateEvent(context.Context, *kube.Event) error { return nil }
func (discardEvents) PatchEventSeries(context.Context, string, string, kube.EventSeries) error {
	return nil
}

// BenchmarkContainerHitWithEvents is BenchmarkContainerHit with Events on,
// as the agent runs by default: a served request tells the Notifier, which
// costs one atomic load while no pod is failing.
func BenchmarkContainerHitWithEvents(b *testing.B) {
	a, h, _ := newUnitAgent(b)
	a.opts.Events = podevents.New(podevents.Options{Events: discardEvents{}})
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
