package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/podcreds/podcreds/internal/testkit/proc"
)

// process is one child (etcd, kube-apiserver, minio) with its output in a log
// file, so a failure can show what the process said.
type process struct {
	*proc.Process
	name    string
	logPath string
}

// startProcess runs bin with args and env (added to a minimal environment),
// so nothing from the test's environment changes what it does.
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
	p, err := proc.Start(cmd, func() { logFile.Close() })
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	return &process{Process: p, name: name, logPath: logPath}, nil
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
	if done, exitErr := p.Exited(); done {
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
