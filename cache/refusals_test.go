package cache

import (
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/golden"
)

// TestRefusalBodies is the golden record (testdata/refusals.golden) of the
// refusals the cache answers itself; the fetch's own are recorded in tokenreq.
func TestRefusalBodies(t *testing.T) {
	golden.Check(t, "refusals.golden", []golden.Refusal{
		{"a request waited --max-fetch-wait for a fetch still running", errPending},
		{"the credentials fetched expire too soon to hand out", errTooShort},
		{"the agent is shutting down (SIGTERM)", ErrClosed},
		{"every pod the entry could act for is gone", podGone(ErrPodGone)},
	})
}
