package main

import (
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
)

func TestProbeAsksItsOwnAgentOverTheSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "health.sock")
	var ready atomic.Bool
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !ready.Load() {
			http.Error(w, "warming: fetching credentials for the pods on this node", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	for _, tc := range []struct {
		name  string
		args  []string
		ready bool
		want  int
	}{
		{"a warming agent is not ready", []string{"-socket", sock}, false, 1},
		{"a warm agent is ready", []string{"-socket", sock}, true, 0},
		{"liveness does not wait for warm-up", []string{"-socket", sock, "-path", "/healthz"}, false, 0},
		{"no agent on the socket is not ready", []string{"-socket", filepath.Join(dir, "none.sock")}, true, 1},
		{"another path is refused", []string{"-socket", sock, "-path", "/metrics"}, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready.Store(tc.ready)
			if got := probeMain(tc.args); got != tc.want {
				t.Fatalf("probe %v exited %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}
