package agent

import (
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort sets SO_REUSEPORT on a socket before it binds.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// migrateSysctl is the kernel setting that moves a closed reuseport
// listener's queued connections to another listener of its group.
const migrateSysctl = "/proc/sys/net/ipv4/tcp_migrate_req"

// RequestMigration reports whether this network namespace migrates queued
// connections between reuseport listeners, and why not when it does not.
func RequestMigration() (bool, string) {
	b, err := os.ReadFile(migrateSysctl)
	if err != nil {
		return false, "the kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 or later has it)"
	}
	if strings.TrimSpace(string(b)) != "1" {
		return false, "net.ipv4.tcp_migrate_req is 0 (set it to 1, or run with --link-setup)"
	}
	return true, ""
}
