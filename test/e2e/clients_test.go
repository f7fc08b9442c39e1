//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/podcreds/podcreds/internal/testkit/democlient"
	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// endpoint is one way a pod's SDK finds podcreds, as the pod's environment
// (and nothing else) tells it.
type endpoint struct {
	name  string // for test names
	label string // for the compatibility table
	env   func(p *pod) []string
	// refusable: an older SDK may refuse this endpoint before asking it, and
	// that is recorded rather than failed.
	refusable bool
}

var (
	fullURI23 = endpoint{
		name: "FULL_URI on 169.254.170.23", refusable: true,
		label: "`AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials` + token file",
		env: func(p *pod) []string {
			return []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.23/v1/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + p.tokenFile}
		},
	}
	fullURI2 = endpoint{
		name:  "FULL_URI on 169.254.170.2",
		label: "`AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.2/v1/credentials` + token file",
		env: func(p *pod) []string {
			return []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.2/v1/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + p.tokenFile}
		},
	}
	relativeURI = endpoint{
		name:  "RELATIVE_URI on 169.254.170.2",
		label: "`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/e2e` (169.254.170.2) + token file",
		env: func(p *pod) []string {
			return []string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/e2e", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=" + p.tokenFile}
		},
	}
	imdsV2 = endpoint{
		name:  "IMDSv2",
		label: "IMDSv2 at 169.254.169.254 (nothing set; redirected to the agent)",
		env:   func(*pod) []string { return nil },
	}
	endpoints = []endpoint{fullURI23, fullURI2, relativeURI, imdsV2}
)

// outcome is what one client run reported.
type outcome struct {
	Client   string `json:"client"`
	Version  string `json:"version"`
	Provider string `json:"provider"`
	Sub      string `json:"sub"`
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
}

// refused reports whether the SDK refused the endpoint's host itself
// (botocore before late 2023 for 169.254.170.23), without asking podcreds.
func (o outcome) refused() bool { return strings.Contains(o.Error, "Unsupported host") }

// client is one unmodified AWS client, run inside a pod.
type client struct {
	name string
	run  func(ctx context.Context, p *pod, env []string, key, body string) outcome
}

var clients = []client{
	{"aws-sdk-go-v2", func(ctx context.Context, p *pod, env []string, _, _ string) outcome {
		return runJSONClient(ctx, p, env, filepath.Join(suite.bin, "goclient"))
	}},
	{"AWS CLI", runAWSCLI},
	{"boto3", func(ctx context.Context, p *pod, env []string, _, _ string) outcome {
		return runJSONClient(ctx, p, env, "/usr/bin/python3", "pyclient/boto3_client.py")
	}},
	{"aws-sdk-js-v3", func(ctx context.Context, p *pod, env []string, _, _ string) outcome {
		return runJSONClient(ctx, p, env, "node", "nodeclient/client.mjs")
	}},
}

func clientNamed(name string) client {
	for _, c := range clients {
		if c.name == name {
			return c
		}
	}
	panic("no client " + name)
}

// use runs c in pod p against endpoint e: it writes a fresh object and reads
// it back with what podcreds served, then the suite reads the object with
// MinIO's admin credentials to prove the write really happened.
func use(p *pod, c client, e endpoint) (outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	home, err := os.MkdirTemp(p.dir, "home-")
	if err != nil {
		return outcome{}, err
	}
	key := fmt.Sprintf("%s/%s/%s", p.name, strings.ReplaceAll(c.name, " ", "-"), e.name)
	body := fmt.Sprintf("written by %s in pod %s through %s, nonce %s\n", c.name, p.name, e.name, nonce())
	env := append([]string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"AWS_REGION=" + testenv.Region,
		"AWS_DEFAULT_REGION=" + testenv.Region,
		"AWS_PAGER=",
		"E2E_S3_ENDPOINT=" + suite.env.S3Endpoint,
		"E2E_BUCKET=" + bucket,
		"E2E_KEY=" + key,
		"E2E_BODY=" + body,
	}, e.env(p)...)
	start := time.Now()
	o := c.run(ctx, p, env, key, body)
	logf("%s in %s via %s: ok=%v sub=%q provider=%q in %s %s", c.name, p.name, e.name, o.OK, o.Sub, o.Provider, time.Since(start).Round(10*time.Millisecond), o.Error)
	if !o.OK {
		return o, nil
	}
	if o.Sub != p.subject() {
		return o, fmt.Errorf("%s in pod %s got credentials for %q, want %q", c.name, p.name, o.Sub, p.subject())
	}
	stored, err := suite.root.GetObject(ctx, &s3.GetObjectInput{Bucket: &[]string{bucket}[0], Key: &key})
	if err != nil {
		return o, fmt.Errorf("%s reported success but s3://%s/%s cannot be read: %w", c.name, bucket, key, err)
	}
	defer stored.Body.Close()
	got, err := io.ReadAll(stored.Body)
	if err != nil || string(got) != body {
		return o, fmt.Errorf("%s reported success but s3://%s/%s holds %q (%v), want %q", c.name, bucket, key, got, err, body)
	}
	return o, nil
}

// inPod runs a command in p's network namespace, as the pod's process would
// run, with exactly env.
func inPod(ctx context.Context, p *pod, env []string, name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.netns, name}, args...)...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// runJSONClient runs a client that prints one JSON outcome line.
func runJSONClient(ctx context.Context, p *pod, env []string, name string, args ...string) outcome {
	stdout, stderr, err := inPod(ctx, p, env, name, args...)
	var o outcome
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &o); jerr != nil {
		return outcome{Client: name, Error: fmt.Sprintf("no result line (%v, exit %v); stderr: %s", jerr, err, lastLines(stderr, 5))}
	}
	return o
}

// runAWSCLI drives Debian's AWS CLI as a user would: export-credentials to
// see whose credentials it holds, then `aws s3 cp` up and down.
func runAWSCLI(ctx context.Context, p *pod, env []string, key, body string) outcome {
	o := outcome{Client: "AWS CLI", Version: awsCLIVersion(ctx, p, env)}
	aws := func(args ...string) (string, error) {
		stdout, stderr, err := inPod(ctx, p, env, "/usr/bin/aws", args...)
		if err != nil {
			return stdout, fmt.Errorf("aws %s: %v: %s", args[0]+" "+args[1], err, lastLines(stderr, 3))
		}
		return stdout, nil
	}
	out, err := aws("configure", "export-credentials", "--format", "process")
	if err != nil {
		o.Error = err.Error()
		return o
	}
	var creds struct{ SessionToken string }
	if err := json.Unmarshal([]byte(out), &creds); err != nil {
		o.Error = "export-credentials: " + err.Error()
		return o
	}
	o.Sub, _ = democlient.Whoami(creds.SessionToken)

	home := strings.TrimPrefix(env[1], "HOME=")
	file := filepath.Join(home, "object")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		o.Error = err.Error()
		return o
	}
	url := "s3://" + bucket + "/" + key
	if _, err := aws("s3", "cp", file, url, "--endpoint-url", suite.env.S3Endpoint, "--only-show-errors"); err != nil {
		o.Error = err.Error()
		return o
	}
	got, err := aws("s3", "cp", url, "-", "--endpoint-url", suite.env.S3Endpoint)
	if err != nil {
		o.Error = err.Error()
		return o
	}
	if got != body {
		o.Error = fmt.Sprintf("read back %d bytes that differ from the %d written", len(got), len(body))
		return o
	}
	o.OK = true
	return o
}

var cliVersion struct {
	once sync.Once
	v    string
}

// awsCLIVersion asks the CLI itself, once: "aws-cli/2.9.19 Python/3.11.2 …".
func awsCLIVersion(ctx context.Context, p *pod, env []string) string {
	cliVersion.once.Do(func() {
		out, _, err := inPod(ctx, p, env, "/usr/bin/aws", "--version")
		if err != nil {
			cliVersion.v = "unknown (" + err.Error() + ")"
			return
		}
		// Keep the CLI's and Python's versions; drop the kernel and prompt.
		var keep []string
		for _, f := range strings.Fields(out) {
			if strings.HasPrefix(f, "aws-cli/") || strings.HasPrefix(f, "Python/") || strings.HasPrefix(f, "source/") {
				keep = append(keep, f)
			}
		}
		cliVersion.v = strings.Join(keep, " ")
	})
	return cliVersion.v
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
