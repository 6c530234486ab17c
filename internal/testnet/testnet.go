// Package testnet holds loopback fixtures shared by relayd's tests: a
// listener whose connects hang, and a count of the sockets and poller fds a
// process holds (for leak checks).
package testnet

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// HangingListener returns a listener on 127.0.0.1 whose connects hang:
// listen backlog 1, never accepting, its accept queue pre-filled until a
// probe connect stays in SYN_SENT (Linux drops SYNs for a listener whose
// accept queue is full). It also returns the listening fd, so a test can
// accept one queued connection to let exactly one more SYN in. Everything
// is closed at the end of the test.
func HangingListener(t testing.TB) (int, netip.AddrPort) {
	t.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(lfd) })
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	dst := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}
	for range 16 {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, dst); err != nil && err != unix.EINPROGRESS {
			unix.Close(fd)
			t.Fatalf("filler connect: %v", err)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, 300)
		if err != nil && err != unix.EINTR {
			unix.Close(fd)
			t.Fatal(err)
		}
		if n == 0 {
			unix.Close(fd) // this probe is stuck in SYN_SENT: the state is reached
			return lfd, ap
		}
		if e, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
			unix.Close(fd)
			t.Fatalf("filler connect failed: %v", unix.Errno(e))
		}
		t.Cleanup(func() { unix.Close(fd) }) // stays in the accept queue
	}
	t.Fatal("accept queue of a backlog-1 listener never filled")
	return lfd, ap
}

// HangingAddr is HangingListener's address alone.
func HangingAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	_, ap := HangingListener(t)
	return ap
}

// CountFDs counts this process's sockets and anonymous-inode fds (epoll,
// eventfd, timerfd): what relay loops and connector workers own. Pipes (Go's
// splice pipe cache) and files the runtime keeps open are not counted.
func CountFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (strings.HasPrefix(target, "socket:") || strings.HasPrefix(target, "anon_inode:")) {
			n++
		}
	}
	return n
}

// RoundTrip writes msg to c and reads it back (an echo upstream behind a
// relay), waiting at most 10 s.
func RoundTrip(c net.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo mismatch: %q", got)
	}
	return nil
}

// RefusedAddr returns 127.0.0.1:port of a TCP socket that is bound and never
// listens, held for the whole test: connects to it are refused, and nothing
// else can be handed the port meanwhile (a closed port could be).
func RefusedAddr(t testing.TB) netip.AddrPort {
	addr, _ := BoundPort(t)
	return addr
}

// BoundPort is RefusedAddr with a way back: after listen() the kernel
// completes connects to the port into its accept queue (nobody accepts; the
// backlog of 1024 is ample for a test), so an upstream that refused starts
// answering — what a health check must notice.
func BoundPort(t testing.TB) (addr netip.AddrPort, listen func()) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	return addr, func() {
		if err := unix.Listen(fd, 1024); err != nil {
			t.Error(err)
		}
	}
}
