// Package proc runs child processes that must never outlive their parent or
// linger after a test: each runs in its own process group (so a stop reaches
// anything it spawned), dies with its parent (Pdeathsig), and stops with
// SIGTERM, then SIGKILL after a grace period.
package proc

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// Process is a started child.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status; valid once done is closed
}

// Start starts cmd (configured by the caller: args, environment, output) in
// its own process group. onExit, if set, runs after the process has exited
// and before Done is closed, e.g. to flush or close its output.
func Start(cmd *exec.Cmd, onExit func()) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if onExit != nil {
			onExit()
		}
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the exit status; valid once Done is closed.
func (p *Process) Err() error { return p.err }

// Pid is the process's id (and its group's).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, with its exit status.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group and waits; after grace it sends
// SIGKILL. It returns the exit status (nil for a clean exit), or why the
// process had to be killed.
func (p *Process) Stop(grace time.Duration) error {
	if done, err := p.Exited(); done {
		return err
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("still running %s after SIGTERM, killed", grace)
	}
}
