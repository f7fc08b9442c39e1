package netsetup

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// migrateReqSysctl moves the connections waiting in a closed SO_REUSEPORT
// listener's accept queue to another listener of its group (Linux 5.14+),
// per network namespace.
const migrateReqSysctl = "/proc/sys/net/ipv4/tcp_migrate_req"

// EnableRequestMigration sets net.ipv4.tcp_migrate_req=1 in the caller's
// network namespace, so an agent that leaves the listening group during an
// upgrade hands its queued connections to the agent that stays instead of
// resetting them. It reports whether it changed the setting. The setting
// stays when the agent exits (it only matters while two agents run, and
// touches no other socket: only reuseport groups migrate).
func EnableRequestMigration() (changed bool, err error) {
	b, err := os.ReadFile(migrateReqSysctl)
	if errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 or later has it): an agent leaving during an upgrade resets the connections in its accept queue")
	}
	if err != nil {
		return false, fmt.Errorf("read net.ipv4.tcp_migrate_req: %w", err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return false, nil
	}
	if err := os.WriteFile(migrateReqSysctl, []byte("1"), 0o644); err != nil {
		return false, fmt.Errorf("set net.ipv4.tcp_migrate_req=1 (needs CAP_NET_ADMIN and a writable /proc/sys in the host network namespace): %w", err)
	}
	return true, nil
}
