//go:build linux

package connector

import (
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/relayd/relayd/internal/evloop"
	"golang.org/x/sys/unix"
)

// sockaddrs are one worker's reusable socket addresses: unix.Connect fills
// the raw form inside the struct, so reusing them keeps a connect free of
// allocations (a fresh &unix.SockaddrInet4{} per call escapes to the heap).
type sockaddrs struct {
	v4 unix.SockaddrInet4
	v6 unix.SockaddrInet6
}

// dial opens a non-blocking, close-on-exec TCP socket and starts connecting
// it to ap. It returns the fd and whether the connect is still in progress;
// on error no fd is left open. The fd was never registered with any poller,
// so closing it here cannot race with a pending event (see worker.closeLater).
func (sa *sockaddrs) dial(ap netip.AddrPort) (fd int, inProgress bool, err error) {
	a := ap.Addr()
	var to unix.Sockaddr
	family := unix.AF_INET
	if a.Is4() || a.Is4In6() {
		sa.v4.Port, sa.v4.Addr = int(ap.Port()), a.Unmap().As4()
		to = &sa.v4
	} else {
		family = unix.AF_INET6
		sa.v6.Port, sa.v6.Addr, sa.v6.ZoneId = int(ap.Port()), a.As16(), zoneID(a.Zone())
		to = &sa.v6
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, false, os.NewSyscallError("socket", err)
	}
	switch err = unix.Connect(fd, to); err {
	case nil:
		return fd, false, nil
	case unix.EINPROGRESS, unix.EINTR:
		// EINTR on a non-blocking connect: the connect goes on in the
		// background exactly as with EINPROGRESS (connect(2)).
		return fd, true, nil
	}
	_ = unix.Close(fd)
	return -1, false, os.NewSyscallError("connect", err)
}

func zoneID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// soError returns the outcome of an asynchronous connect (SO_ERROR) — 0 for
// connected — and clears it.
func soError(fd int) unix.Errno {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		if e, ok := err.(unix.Errno); ok {
			return e
		}
		return unix.EINVAL
	}
	return unix.Errno(v)
}

// connectDone reports whether ev says a connecting socket is finished: write
// readiness, or an error/hang-up (epoll reports those unasked).
func connectDone(ev evloop.IOEvent) (writable, failed bool) {
	return ev&evloop.WriteEvents != 0, ev&evloop.ErrEvents != 0
}

// connected reports whether a connecting socket has a peer: a connect that
// completed but whose event the worker has not seen yet.
func connected(fd int) bool {
	_, err := unix.Getpeername(fd)
	return err == nil
}

func setNoDelay(fd int) { _ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) }

func closeFD(fd int) { _ = unix.Close(fd) }

var errHangup = os.NewSyscallError("connect", unix.ECONNRESET)
