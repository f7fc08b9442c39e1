// Package anycluster tests podcreds on a self-managed cluster, with no
// hand-made trust: kube-apiserver's issuer is an https bucket (MinIO with a
// TLS certificate), `podcreds issuer` publishes the discovery document and
// keys there, and a second MinIO acting as STS trusts only that public URL.
// It runs the podcreds binary as an operator would.
package anycluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

var (
	env *testenv.Env
	// podcredsBin is the binary under test, built once by TestMain.
	podcredsBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "podcreds-anycluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	podcredsBin = filepath.Join(dir, "podcreds")
	build := exec.Command("go", "build", "-o", podcredsBin, "../../cmd/podcreds")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: building podcreds: %v\n%s", err, out)
		os.Exit(1)
	}
	testenv.MainWith(&cleanup{m, dir}, &env, testenv.Options{PublicIssuer: true})
}

type cleanup struct {
	m   *testing.M
	dir string
}

func (c *cleanup) Run() int {
	defer os.RemoveAll(c.dir)
	return c.m.Run()
}
