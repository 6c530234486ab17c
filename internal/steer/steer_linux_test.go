package steer

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func listenGroup(t *testing.T, n int) (fds []int, port int) {
	t.Helper()
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if err := unix.Listen(fd, 64); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			sa, _ := unix.Getsockname(fd)
			port = sa.(*unix.SockaddrInet4).Port
		}
		fds = append(fds, fd)
	}
	return fds, port
}

// Connections from 19 source addresses, 3 each, reach exactly the socket
// Index names: the kernel runs the program as Go computes it.
func TestSteersBySource(t *testing.T) {
	for _, n := range []int{1, 3, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			fds, port := listenGroup(t, n)
			if err := Attach(fds[0], n); err != nil {
				t.Fatal(err)
			}
			used := map[int]bool{}
			for host := byte(2); host <= 20; host++ {
				src := netip.AddrFrom4([4]byte{127, 0, 0, host})
				want := Index(src, n)
				used[want] = true
				for range 3 {
					c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						t.Fatal(err)
					}
					if err := unix.Bind(c, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
						t.Fatal(err)
					}
					if err := unix.Connect(c, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
						t.Fatal(err)
					}
					if got := acceptedOn(t, fds); got != want {
						t.Fatalf("source %v: accepted on socket %d, Index says %d", src, got, want)
					}
					unix.Close(c)
				}
			}
			if len(used) != n {
				t.Fatalf("19 sources used %d of %d sockets", len(used), n)
			}
		})
	}
}

// acceptedOn waits (bounded) for the one socket of fds that has a
// connection queued, accepts it and returns its index.
func acceptedOn(t *testing.T, fds []int) int {
	t.Helper()
	pfd := make([]unix.PollFd, len(fds))
	for i, fd := range fds {
		pfd[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.Poll(pfd, 1000)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range pfd {
			if pfd[i].Revents&unix.POLLIN != 0 {
				nfd, _, err := unix.Accept(fds[i])
				if err != nil {
					t.Fatal(err)
				}
				unix.Close(nfd)
				return i
			}
		}
	}
	t.Fatal("no socket got the connection within 10s")
	return -1
}

// The /64 of an IPv6 source decides, not the host part.
func TestIndexIPv6Prefix(t *testing.T) {
	a := netip.MustParseAddr("2001:db8:1:2::1")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::9")
	for n := 1; n <= 16; n++ {
		if Index(a, n) != Index(b, n) {
			t.Fatalf("n=%d: one /64 steered to two sockets", n)
		}
	}
	if Index(netip.MustParseAddr("::ffff:127.0.0.9"), 4) != Index(netip.MustParseAddr("127.0.0.9"), 4) {
		t.Fatal("a mapped IPv4 address is not steered as the IPv4 one")
	}
}
