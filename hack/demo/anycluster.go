package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/testenv"
)

// The --any-cluster demo (make demo-any-cluster): the cluster is a
// self-managed one whose issuer is an https bucket. Before the agent runs,
// `podcreds issuer publish --once` publishes the issuer there, an STS that
// trusts only that public URL starts, and `podcreds doctor` checks the chain.

// publishIssuer runs `podcreds issuer publish --once` as an admin would,
// shows what became public, and starts the STS that trusts the public URL.
func publishIssuer(ctx context.Context, u *ui, env *testenv.Env, opts options, dir string) error {
	pub := env.Public
	args := []string{"issuer", "publish", "--once", "--public-url=" + pub.URL, "--bucket=" + testenv.IssuerBucket,
		"--s3-endpoint=" + pub.Endpoint, "--s3-path-style", "--s3-region=" + testenv.Region, "--log-format=console"}
	u.step("kube-apiserver signs tokens as %s; publishing that issuer: %s %s", pub.URL, opts.agentBin, strings.Join(args, " "))
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig, ""); err != nil {
		return err
	}
	creds := []string{"KUBECONFIG=" + kubeconfig, "AWS_CA_BUNDLE=" + pub.CAFile,
		"AWS_ACCESS_KEY_ID=" + pub.RootUser, "AWS_SECRET_ACCESS_KEY=" + pub.RootPassword}
	if err := runTool(ctx, opts.agentBin, args, dir, creds, u.writer("issuer | ")); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	hc, err := env.PublicHTTPClient()
	if err != nil {
		return err
	}
	for _, p := range []string{"/.well-known/openid-configuration", "/openid/v1/jwks"} {
		u.step("anyone (AWS included) can now read %s%s", pub.URL, p)
		res, err := hc.Get(pub.URL + p)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
		res.Body.Close()
		w := u.writer("public | ")
		fmt.Fprintf(w, "HTTP %d, Content-Type %s\n", res.StatusCode, res.Header.Get("Content-Type"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 8 {
			lines = append(lines[:8], "...")
		}
		fmt.Fprintln(w, strings.Join(lines, "\n"))
		w.flush()
	}
	u.step("starting MinIO as the STS, configured with the public discovery URL only (as AWS is once the IAM OIDC provider exists)")
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return env.StartPublicSTS(sctx)
}

// runDoctor runs `podcreds doctor` against the chain the pod will use.
func runDoctor(ctx context.Context, u *ui, env *testenv.Env, opts options, dir string) error {
	args := []string{"doctor", "--public-url=" + env.Public.URL, "--ca-file=" + env.Public.CAFile,
		"--service-account=" + appNamespace + "/" + appSA, "--role-arn=" + env.RoleARN, "--sts-endpoint=" + env.STSEndpoint}
	u.step("checking the chain: %s %s", opts.agentBin, strings.Join(args, " "))
	return runTool(ctx, opts.agentBin, args, dir, []string{"KUBECONFIG=" + filepath.Join(dir, "admin.kubeconfig")}, u.writer("doctor | "))
}

// runTool runs the podcreds binary to completion with env.
func runTool(ctx context.Context, bin string, args []string, dir string, env []string, out *lineWriter) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	out.flush()
	if err != nil {
		return fmt.Errorf("%s %s failed (%v); its last lines:\n%s", bin, args[0], err, out.lastLines())
	}
	return nil
}
