//go:build !linux

package agent

import "syscall"

// reusePort does nothing off Linux: the agent runs on Linux nodes; other
// systems only run its tests and tools, one agent at a time.
func reusePort(_, _ string, _ syscall.RawConn) error { return nil }

// RequestMigration reports that only Linux migrates queued connections.
func RequestMigration() (bool, string) {
	return false, "only Linux migrates queued connections between listeners"
}
