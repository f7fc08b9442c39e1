package loadgen

import (
	"strings"
	"testing"
	"time"

	"github.com/podcreds/podcreds/bench/bare"
)

// TestBareVsBare runs the whole pipeline (two bare servers, both connection
// modes, interleaved rounds) and logs the table: two identical servers
// should come out near 1.00x of each other, which shows how much noise the
// machine adds. It asserts only that every run succeeded.
func TestBareVsBare(t *testing.T) {
	if testing.Short() {
		t.Skip("about two seconds of load")
	}
	checkGoroutines(t)
	var targets []Target
	for _, name := range []string{"bare-a", "bare-b"} {
		addr, stop, err := bare.Serve(t.Context(), "127.0.0.1:0", testBody)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		for _, keepAlive := range []bool{true, false} {
			cfg := Config{
				URL:           "http://" + addr.String() + "/v1/credentials",
				Sources:       testSources(8),
				KeepAlive:     keepAlive,
				Concurrency:   8,
				Duration:      200 * time.Millisecond,
				MaxRequests:   50_000,
				ExpectBodyLen: len(testBody),
			}
			targets = append(targets, Target{Name: name, Config: cfg})
		}
	}
	// a keepalive, a conn/req, b keepalive, b conn/req → compare like with like.
	targets[1], targets[2] = targets[2], targets[1]
	series, err := Interleave(t.Context(), 3, targets)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := FormatTable(&sb, "", series); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sb.String())
	for _, s := range series {
		if sum := s.Summary(); sum.Errors != 0 || sum.RPS == 0 {
			t.Errorf("%s: %+v", s.Name, sum)
		}
	}
}
