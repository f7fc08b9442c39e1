package loadgen

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT from <linux/in.h> (the same
// on every architecture; syscall defines it only for a few).
const ipBindAddressNoPort = 24

// bindNoPort asks the kernel to defer choosing the source port of a socket
// bound to a source address until connect, so that ports are allocated per
// destination and TIME_WAIT reuse applies (see dialer). It is best effort:
// kernels before 4.2 reject the option and dial as before.
func bindNoPort(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}
