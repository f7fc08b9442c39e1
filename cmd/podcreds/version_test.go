package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestResolveBuild(t *testing.T) {
	fromVCS := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"},
		}}, true
	}
	for _, tc := range []struct {
		name            string
		version, commit string
		read            func() (*debug.BuildInfo, bool)
		want            buildInfo
	}{
		{"stamped values win over the toolchain's", "v1.2.3", "feed", fromVCS, buildInfo{"v1.2.3", "feed", "go1.99.1"}},
		{"an unstamped build reports the module version and the revision, marked dirty", "", "", fromVCS, buildInfo{"v0.3.0", "0123abcd+dirty", "go1.99.1"}},
		{"a development build without VCS information says unknown", "", "", func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}}, true
		}, buildInfo{"unknown", "unknown", "go1.99.1"}},
		{"without build information the running Go version is reported", "", "", func() (*debug.BuildInfo, bool) { return nil, false },
			buildInfo{"unknown", "unknown", runtime.Version()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveBuild(tc.version, tc.commit, tc.read); got != tc.want {
				t.Fatalf("resolveBuild = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestMakeBuildStampsVersion builds the binary as `make build` does and runs
// `podcreds version` and `podcreds --version`: both print the git describe
// and the full revision of this checkout, and the Go version.
func TestMakeBuildStampsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary with make")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v (this test needs the git checkout)", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	describe, rev := git("describe", "--tags", "--always", "--dirty"), git("rev-parse", "HEAD")
	bin := filepath.Join(t.TempDir(), "podcreds")
	if out, err := exec.Command("make", "-C", root, "--no-print-directory", "build", "PODCREDS_BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil {
			t.Fatalf("podcreds %s: %v\n%s", arg, err, out)
		}
		line := strings.TrimSpace(string(out))
		if !strings.HasPrefix(line, "podcreds "+describe+" (commit "+rev) || !strings.Contains(line, runtime.Version()) {
			t.Fatalf("podcreds %s printed %q, want version %s, commit %s and %s", arg, line, describe, rev, runtime.Version())
		}
	}
	if out, err := exec.Command(bin, "version", "extra").CombinedOutput(); err == nil || !strings.Contains(string(out), "takes no arguments") {
		t.Fatalf("podcreds version extra: %v %q, want exit 2 saying it takes no arguments", err, out)
	}
}

// TestAgentFirstLogLineHasVersion runs the agent until it fails to read its
// kubeconfig: by then it has logged its first line, which names the build.
func TestAgentFirstLogLineHasVersion(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PODCREDS_TEST_RUN_MAIN=1",
		"PODCREDS_TEST_ARGS=agent --node-name=n --pod-token-verification=off --kubeconfig="+filepath.Join(t.TempDir(), "missing"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("the agent ran without a kubeconfig; stderr:\n%s", stderr.String())
	}
	first, err := bufio.NewReader(&stderr).ReadBytes('\n')
	if err != nil {
		t.Fatalf("no log line: %v", err)
	}
	var line struct {
		Msg, Version, Commit, GoVersion string
	}
	if err := json.Unmarshal(first, &line); err != nil {
		t.Fatalf("first stderr line %q is not a JSON log line: %v", first, err)
	}
	want := currentBuild()
	if line.Msg != "podcreds agent" || line.Version != want.Version || line.Commit != want.Commit || line.GoVersion != want.GoVersion {
		t.Fatalf("first log line %s, want msg \"podcreds agent\" with %+v", first, want)
	}
}

// TestVersionCABundle runs `podcreds version --ca-bundle` against a trust
// store of one certificate, and against an empty one, which must fail: it is
// how make image-test shows the image carries its CA bundle.
func TestVersionCABundle(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	oneCert, empty := filepath.Join(dir, "one.pem"), filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(oneCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(bundle string) (string, error) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "PODCREDS_TEST_RUN_MAIN=1", "PODCREDS_TEST_ARGS=version --ca-bundle",
			"SSL_CERT_FILE="+bundle, "SSL_CERT_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(oneCert); err != nil || !strings.Contains(out, "system CA certificates: 1\n") {
		t.Fatalf("with one certificate: %v\n%s", err, out)
	}
	if out, err := run(empty); err == nil || !strings.Contains(out, "no system CA certificates") {
		t.Fatalf("with an empty bundle: %v, want exit 1 saying there are no CA certificates:\n%s", err, out)
	}
}
