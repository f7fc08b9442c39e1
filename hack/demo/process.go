package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/podcreds/podcreds/internal/testkit/proc"
)

// process is a child the demo started: the agent.
type process struct {
	*proc.Process
	out *lineWriter
}

// startProcess starts bin with a minimal environment (PATH, HOME=dir, plus
// env), so nothing from the caller's shell — AWS keys, KUBECONFIG,
// PODCREDS_* — changes what it does. It runs in its own process group:
// Ctrl-C in the terminal reaches only the demo, which then stops it in
// order; it dies with the demo if the demo itself is killed.
func startProcess(bin string, args []string, dir string, env []string, out *lineWriter) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.Stdout, cmd.Stderr = out, out // the same writer: exec then uses one pipe, in order
	// A grandchild holding the pipe open must not hang Wait.
	cmd.WaitDelay = 5 * time.Second
	p, err := proc.Start(cmd, out.flush)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return &process{Process: p, out: out}, nil
}

// waitReady polls url until it answers 200, the process exits, or timeout
// passes. Polling is the only way to watch another process's readiness
// endpoint.
func waitReady(ctx context.Context, p *process, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	start := time.Now()
	var last error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if res, err := client.Do(req); err != nil {
			last = err
		} else {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s answered %s", url, res.Status)
		}
		select {
		case <-p.Done():
			return fmt.Errorf("the agent exited (%v) before it was ready; its last lines:\n%s", p.Err(), p.out.lastLines())
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded && time.Since(start) >= timeout {
				return fmt.Errorf("the agent was not ready within %s (last: %v); its last lines:\n%s", timeout, last, p.out.lastLines())
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// runClient runs the pod's application to completion. Its environment is
// what a pod on a podcreds node gets and nothing else: the endpoint URL, and a
// HOME of its own so no ~/.aws configuration leaks in.
func runClient(ctx context.Context, bin string, args []string, endpoint, dir string, out *lineWriter) error {
	home := filepath.Join(dir, "pod-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + endpoint,
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out.flush()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("the pod's application was stopped: %w", ctx.Err())
		}
		return fmt.Errorf("the pod's application failed (%v); its last lines:\n%s", err, out.lastLines())
	}
	return nil
}

// freePorts returns n distinct free ports on 127.0.0.1. It holds all n
// listeners open at once, so the kernel cannot hand out the same port twice,
// then closes them for the agent to bind. Another process could take one in
// between; on a developer machine that race is rare, and the agent then exits
// with a bind error that the demo shows.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
