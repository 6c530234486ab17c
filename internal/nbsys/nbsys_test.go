//go:build linux

package nbsys

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// connectTo opens a non-blocking socket, connects it to ln with Connect and
// returns it and the accepted peer.
func connectTo(t *testing.T, network string, ln net.Listener) (int, net.Conn) {
	t.Helper()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	family := unix.AF_INET
	if network == "tcp6" {
		family = unix.AF_INET6
	}
	fd, err := Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Close(fd) })
	if err := Connect(fd, ap, 0); err != nil && err != unix.EINPROGRESS {
		t.Fatalf("connect %v: %v", ap, err)
	}
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The peer's address is the socket's own: the port went out in network
	// byte order, or the accept above would not have matched.
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	var local int
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		local = a.Port
	case *unix.SockaddrInet6:
		local = a.Port
	}
	if got := c.RemoteAddr().(*net.TCPAddr).Port; got != local {
		t.Fatalf("peer sees port %d, socket has %d", got, local)
	}
	return fd, c
}

// Bytes both ways, EAGAIN on an empty socket, EOF after shutdown, EPIPE
// after the peer is gone: the same answers as x/sys/unix.
func TestReadWriteShutdown(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			fd, c := connectTo(t, network, ln)
			if err := SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
				t.Fatal(err)
			}
			if v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); v != 1 {
				t.Fatalf("TCP_NODELAY = %d", v)
			}
			buf := make([]byte, 64)
			if n, err := Read(fd, buf); n != -1 || err != unix.EAGAIN {
				t.Fatalf("read of an empty socket: %d, %v", n, err)
			}
			msg := []byte("relayd nbsys")
			if n, err := Write(fd, msg); n != len(msg) || err != nil {
				t.Fatalf("write: %d, %v", n, err)
			}
			got := make([]byte, len(msg))
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("peer read %q, %v", got, err)
			}
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			n := waitRead(t, fd, buf)
			if !bytes.Equal(buf[:n], msg) {
				t.Fatalf("read %q", buf[:n])
			}
			if n, err := Write(fd, nil); n != 0 || err != nil {
				t.Fatalf("empty write: %d, %v", n, err)
			}
			if err := Shutdown(fd, unix.SHUT_WR); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Read(got); n != 0 || err == nil {
				t.Fatalf("peer read after shutdown: %d, %v", n, err)
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			if n := waitRead(t, fd, buf); n != -1 {
				t.Fatalf("read after the peer's reset: %d", n)
			}
			if _, err := Write(fd, msg); !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("write after the peer's reset: %v", err)
			}
			if err := Shutdown(-1, unix.SHUT_WR); err != unix.EBADF {
				t.Fatalf("shutdown of a bad fd: %v", err)
			}
		})
	}
}

// waitRead polls fd (bounded) until a read returns something other than
// EAGAIN: the byte count, or -1 for an error other than EAGAIN.
func waitRead(t *testing.T, fd int, buf []byte) int {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for range 100 {
		if _, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		n, err := Read(fd, buf)
		if err != unix.EAGAIN {
			return n
		}
	}
	t.Fatal("socket never became readable")
	return 0
}

// A refused connect comes back as ECONNREFUSED through SO_ERROR, as with
// unix.Connect; an address nobody listens on shows the family is right.
func TestConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	fd, err := Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	err = Connect(fd, netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port()), 0) // 4-in-6 form
	if err != nil && err != unix.EINPROGRESS && err != unix.ECONNREFUSED {
		t.Fatal(err)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if _, err := unix.Poll(pfd, 10000); err != nil {
		t.Fatal(err)
	}
	if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); unix.Errno(v) != unix.ECONNREFUSED && err != unix.ECONNREFUSED {
		t.Fatalf("SO_ERROR %v, connect %v", unix.Errno(v), err)
	}
	if err := Close(fd); err != nil {
		t.Fatal(err)
	}
	if err := Close(fd); err != unix.EBADF {
		t.Fatalf("second close: %v", err)
	}
}

// Splice moves bytes socket -> pipe -> socket.
func TestSplice(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, ca := connectTo(t, "tcp4", ln)
	b, cb := connectTo(t, "tcp4", ln)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer Close(p[0])
	defer Close(p[1])
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	if _, err := ca.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = cb.SetDeadline(time.Now().Add(10 * time.Second))
	moved := 0
	pfd := []unix.PollFd{{Fd: int32(a), Events: unix.POLLIN}}
	for range 1000 {
		if moved == len(msg) {
			break
		}
		if _, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		n, err := Splice(a, p[1], len(msg)-moved, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EAGAIN {
			continue
		}
		if err != nil || n <= 0 {
			t.Fatalf("splice in: %d, %v", n, err)
		}
		for w := 0; w < n; {
			m, err := Splice(p[0], b, n-w, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if err != nil {
				t.Fatalf("splice out: %v", err)
			}
			w += m
		}
		moved += n
	}
	if _, err := io.ReadFull(cb, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("spliced %d bytes, peer read err %v, equal %v", moved, err, bytes.Equal(got, msg))
	}
}
