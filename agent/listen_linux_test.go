package agent

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestReusePortLeave measures what happens to connections waiting in the
// accept queue of a reuseport listener that leaves its group (an old agent
// on SIGTERM), for the three ways the node can be set up: without request
// migration they are reset, with net.ipv4.tcp_migrate_req=1 the kernel moves
// them to the listener that stays, and a listening socket handed to the new
// process over a Unix socket (SCM_RIGHTS) never closes at all. It runs in a
// throwaway network namespace, so the machine's own setting is untouched.
func TestReusePortLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("needs root and a network namespace; -short runs only the pure tests")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test sets net.ipv4.tcp_migrate_req in a throwaway network namespace and needs root: run it as root, or with -short to leave it out")
	}
	const conns = 64
	for _, tc := range []struct {
		name     string
		migrate  string
		handover bool
		wantLoss bool
	}{
		{"without migration the leaving listener's queue is reset", "0", false, true},
		{"with tcp_migrate_req=1 no queued connection is lost", "1", false, false},
		{"a listener handed over with SCM_RIGHTS loses none", "0", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lost, queued int
			done := make(chan struct{})
			go func() {
				defer close(done)
				runtime.LockOSThread() // never unlocked: the thread and its namespace are discarded
				lost, queued = leaveWithQueue(t, tc.migrate, tc.handover, conns)
			}()
			<-done
			if t.Failed() {
				return
			}
			t.Logf("tcp_migrate_req=%s handover=%v: %d of %d connections were queued on the leaving listener, %d lost",
				tc.migrate, tc.handover, queued, conns, lost)
			if queued == 0 {
				t.Fatalf("no connection was queued on the leaving listener: the test proved nothing")
			}
			if tc.wantLoss && lost == 0 {
				t.Errorf("no connection lost without migration: the measurement cannot tell the ways apart")
			}
			if !tc.wantLoss && lost != 0 {
				t.Errorf("%d connections lost, want 0", lost)
			}
		})
	}
}

// leaveWithQueue runs on a locked thread: it moves the thread into a new
// network namespace, binds two reuseport listeners (the old and the new
// agent), connects n clients without accepting, makes the old listener
// leave (closing it, or handing it over first) and counts the clients whose
// connection no listener answers. queued is how many had gone to the old one.
func leaveWithQueue(t *testing.T, migrate string, handover bool, n int) (lost, queued int) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Errorf("unshare(CLONE_NEWNET): %v", err)
		return
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Errorf("bring up lo: %v", err)
		return
	}
	if err := os.WriteFile(migrateSysctl, []byte(migrate), 0o644); err != nil {
		t.Errorf("set tcp_migrate_req: %v", err)
		return
	}
	oldL, err := listenGroup("127.0.0.1:0")
	if err != nil {
		t.Errorf("old listener: %v", err)
		return
	}
	newL, err := listenGroup(oldL.Addr().String())
	if err != nil {
		t.Errorf("new listener beside the old: %v", err)
		return
	}
	defer newL.Close()

	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", oldL.Addr().String(), time.Second)
		if err != nil {
			t.Errorf("dial: %v", err)
			return
		}
		clients = append(clients, c)
	}
	queued = queueLen(t, oldL)

	var kept net.Listener
	if handover {
		kept = handOver(t, oldL)
		if kept == nil {
			return
		}
		defer kept.Close()
	}
	oldL.Close()

	// Whatever listener still holds a connection answers it.
	serveQueued := func(l net.Listener) {
		for {
			_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(300 * time.Millisecond))
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}
	serveQueued(newL)
	if kept != nil {
		serveQueued(kept)
	}
	for _, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
			lost++
		}
	}
	return lost, queued
}

// queueLen is how many connections wait in l's accept queue (TCP_INFO's
// unacked field of a listening socket).
func queueLen(t *testing.T, l net.Listener) int {
	raw, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Errorf("syscall conn: %v", err)
		return 0
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		t.Errorf("TCP_INFO: %v %v", err, ierr)
		return 0
	}
	return int(info.Unacked)
}

// handOver passes l's socket through a Unix socket pair, as one process
// hands it to another, and returns the listener made from what arrived.
func handOver(t *testing.T, l net.Listener) net.Listener {
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Errorf("listener file: %v", err)
		return nil
	}
	defer f.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Errorf("socketpair: %v", err)
		return nil
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		t.Errorf("sendmsg: %v", err)
		return nil
	}
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(pair[1], make([]byte, 1), oob, 0)
	if err != nil {
		t.Errorf("recvmsg: %v", err)
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Errorf("control message: %v", errors.Join(err, errors.New("want one")))
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Errorf("rights: %v", err)
		return nil
	}
	rf := os.NewFile(uintptr(fds[0]), "handed-over")
	defer rf.Close()
	got, err := net.FileListener(rf)
	if err != nil {
		t.Errorf("listener from the handed-over socket: %v", err)
		return nil
	}
	return got
}
