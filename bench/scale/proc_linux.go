package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd's process die if this one does, so that an agent
// never outlives an interrupted benchmark holding its ports.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
