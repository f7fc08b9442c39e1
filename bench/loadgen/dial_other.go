//go:build !linux

package loadgen

import "syscall"

// bindNoPort does nothing off Linux, where IP_BIND_ADDRESS_NO_PORT does not
// exist; SO_LINGER 0 still keeps TIME_WAIT sockets from piling up.
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
