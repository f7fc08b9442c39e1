//go:build e2e

// Package e2e proves podcreds end to end on one machine, with nothing faked:
// a "node" network namespace runs kube-apiserver, etcd, MinIO (STS and S3)
// and the agent binary, which sets up its own link-local addresses and IMDS
// redirect (--link-setup); each pod is a network namespace of its own with a
// veth to the node, registered in the API server with its address, with its
// projected ServiceAccount token in a file as the kubelet writes it; and
// unmodified AWS clients (aws-sdk-go-v2, Debian's AWS CLI and boto3, the JS
// v3 SDK) run inside the pods and use S3 with what the agent serves them.
//
// `make e2e` runs it (as root); `go test -tags e2e ./test/e2e` does too once
// the clients are installed. It needs root and fails, never skips, without it.
//
// The test binary runs twice. Started by `go test`, it checks root and the
// clients, builds the agent and the Go client, removes what a crashed earlier
// run left (namespaces named pce2e-*, and the processes in them), creates the
// node namespace and runs itself again inside it. That inner run does the
// work, so every process it starts, and every connection it makes, is in the
// node's namespace. Nothing leaves the namespaces the suite creates: the node
// namespace has no route off the machine.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// envInner marks the run inside the node namespace; envBin names the
	// directory with the binaries the outer run built.
	envInner = "PODCREDS_E2E_INNER"
	envBin   = "PODCREDS_E2E_BIN"

	// nsPrefix names every network namespace the suite creates, so a rerun
	// can find and remove what a crashed run left.
	nsPrefix = "pce2e-"
	nodeNS   = nsPrefix + "node"
	// scratchPrefix names the run's scratch directory under $TMPDIR.
	scratchPrefix = "podcreds-e2e-"

	// overall bounds the whole run, setup to teardown.
	overall = 8 * time.Minute
)

func TestMain(m *testing.M) {
	if os.Getenv(envInner) == "" {
		os.Exit(outer())
	}
	os.Exit(inner(m))
}

// outer prepares the machine, runs the suite inside the node namespace and
// removes the namespaces again, whatever happened.
func outer() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: "+format+"\n", args...)
		return 1
	}
	if os.Geteuid() != 0 {
		return fail("needs root: it creates network namespaces, veth pairs and nftables rules. Run it as root: `sudo make e2e` (`make test` runs it too)")
	}
	if err := preflight(); err != nil {
		return fail("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, overall)
	defer cancel()

	// Everything of a crashed earlier run goes first: its namespaces, the
	// processes in them, its scratch directory.
	if err := removeLeftovers(true); err != nil {
		return fail("removing what an earlier run left: %v", err)
	}
	scratch, err := os.MkdirTemp("", scratchPrefix)
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if err := removeLeftovers(false); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: cleanup: %v\n", err)
		}
		if os.Getenv("PODCREDS_KEEP_E2E") == "" {
			_ = os.RemoveAll(scratch)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: kept %s\n", scratch)
		}
	}()
	bin, tmp := filepath.Join(scratch, "bin"), filepath.Join(scratch, "tmp")
	for _, d := range []string{bin, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fail("%v", err)
		}
	}
	start := time.Now()
	for name, pkg := range map[string]string{"podcreds": "./cmd/podcreds", "goclient": "./test/e2e/goclient", "rollclient": "./test/e2e/rollclient"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, name), pkg)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			return fail("go build %s: %v\n%s", pkg, err, out)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: built the agent and the Go clients in %s\n", time.Since(start).Round(100*time.Millisecond))

	if err := sh("ip", "netns", "add", nodeNS); err != nil {
		return fail("%v", err)
	}

	self, err := os.Executable()
	if err != nil {
		return fail("%v", err)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", nodeNS, self}, os.Args[1:]...)...)
	// The inner run's temporary files (testenv's too) go under scratch.
	cmd.Env = append(os.Environ(), envInner+"=1", envBin+"="+bin, "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// If this process dies, the inner run dies with it; its own children
	// (control plane, agent) die with it in turn.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		return fail("stopped (%v) after %s", context.Cause(ctx), time.Since(start).Round(time.Second))
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		return fail("running the suite in the node namespace: %v", err)
	}
}

// preflight checks that what `make e2e` installs is there, and says how to
// get it when it is not.
func preflight() error {
	var missing []string
	for _, c := range []struct{ path, pkg string }{
		{"ip", "iproute2"}, {"nft", "nftables"}, {"/usr/bin/aws", "awscli"}, {"/usr/bin/python3", "python3"}, {"node", "nodejs"},
	} {
		if _, err := exec.LookPath(c.path); err != nil {
			missing = append(missing, c.pkg)
		}
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import boto3").Run(); err != nil {
		missing = append(missing, "python3-boto3")
	}
	if _, err := os.Stat("nodeclient/node_modules/@aws-sdk/client-s3/package.json"); err != nil {
		missing = append(missing, "the Node client's packages (cd test/e2e/nodeclient && npm ci)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: `make e2e` installs them", strings.Join(missing, ", "))
	}
	return nil
}

// inner runs the suite inside the node namespace.
func inner(m *testing.M) int {
	start := time.Now()
	s, err := setUp()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e setup: %v\n", err)
		s.tearDown()
		return 1
	}
	logf("setup done in %s", time.Since(start).Round(100*time.Millisecond))
	suite = s
	code := m.Run()
	if err := writeCompat("compat.md", s.compat.rows()); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: e2e: writing the compatibility table: %v\n", err)
		code = 1
	}
	s.tearDown()
	logf("whole run %s", time.Since(start).Round(100*time.Millisecond))
	return code
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e: %s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
