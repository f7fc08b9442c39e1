package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Sockets during upgrades.
//
// Every listener the agent opens sets SO_REUSEPORT, so a new agent binds the
// same addresses beside the old one and the kernel spreads new connections
// over both: the DaemonSet can surge one agent over the other instead of
// stopping the old one first. A new agent binds its credential listeners only
// once it is warm (Agent.Run), which is what "joining the group" means here;
// an old one leaves by closing them (Agent.leave) before it drains.
//
// Closing a listener of a reuseport group resets the connections still
// waiting in its accept queue, unless the kernel migrates them to another
// listener of the group: net.ipv4.tcp_migrate_req=1 (Linux 5.14+; set by
// --link-setup, reported at start otherwise). TestReusePortLeave measures it.

// listenGroup binds addr with SO_REUSEPORT.
func listenGroup(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: reusePort}
	return lc.Listen(context.Background(), "tcp", addr)
}

// onceCloser closes its listener once: the agent closes credential
// listeners itself to leave the group and later lets http.Server.Shutdown
// close them again, which must then not report an error (Shutdown's error
// would make the drain give up and cut the requests in flight).
type onceCloser struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloser) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// serveSocket serves h on a Unix socket at path, replacing a socket a
// previous run of this container left (never any other kind of file).
func (a *Agent) serveSocket(path string, h http.Handler) (*http.Server, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("health socket %s: a %s is in the way, not a socket", path, fi.Mode().Type())
		}
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("health socket: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(a.logger.Named("http"))}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}
