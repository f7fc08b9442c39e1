// Package integration tests podcreds against the real parts it talks to in
// production: a kube-apiserver (with etcd) that signs bound ServiceAccount
// tokens, and MinIO's STS that verifies them. One environment serves the
// whole package; tests isolate themselves by namespace and node name.
package integration

import (
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

var env *testenv.Env

// After every test has run, the debug logs of every agent are scanned for
// every secret the suite saw handed out.
func TestMain(m *testing.M) { testenv.Main(m, &env, secrets.scanLogs) }
