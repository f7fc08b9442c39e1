package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// process is one child (etcd, kube-apiserver, minio) with its output in a log
// file, so a failure can show what the process said.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status; valid after done is closed
}

// startProcess runs bin with args and env (added to a minimal environment) in
// its own process group, so stopping it also stops anything it spawned.
func startProcess(dir, name, bin string, args, env []string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	// Pdeathsig: if the test binary is killed outright, the child dies with it
	// instead of holding its ports for the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has already ended, with its status.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	if done, _ := p.exited(); done {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the last n lines the process wrote.
func (p *process) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// failure wraps err with the process's last words, so a test that cannot
// start its environment says why instead of timing out mutely.
func (p *process) failure(err error) error {
	state := "still running"
	if done, exitErr := p.exited(); done {
		state = fmt.Sprintf("exited: %v", exitErr)
	}
	return fmt.Errorf("%s: %w (%s)\n--- last lines of %s ---\n%s\n---", p.name, err, state, p.logPath, indent(p.tail(40)))
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// findBinary locates one of the tools `make tools` builds.
func findBinary(name string) (string, error) {
	var dirs []string
	if d := os.Getenv("PODCREDS_TOOLS_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	// Walk up from the working directory (a package directory under `go test`)
	// to the checkout's .tools/bin.
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			dirs = append(dirs, filepath.Join(d, ".tools", "bin"))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not built: run `make tools` in the checkout (`make test` does it for you); looked in %s", name, strings.Join(dirs[:min(len(dirs), 3)], ", "))
}

// errStopped is returned by waits cut short because the process exited.
var errStopped = errors.New("process exited")
