//go:build linux

package relay

import (
	"fmt"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/nbsys"
)

// listenTCP opens a non-blocking listening socket. With reuseport every loop
// binds its own socket to the same address and the kernel spreads incoming
// connections across them (the SO_REUSEPORT seed).
func listenTCP(ap netip.AddrPort, reuseport bool, backlog int) (int, netip.AddrPort, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, ap, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, ap, fmt.Errorf("relay: listen %s: %w", ap, os.NewSyscallError(op, err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt SO_REUSEADDR", err)
	}
	if reuseport {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("setsockopt SO_REUSEPORT", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fail("listen", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, addrPort(sa), nil
}

// accept4 is accept4(2) into a sockaddr on the stack: unix.Accept4 returns
// the peer as a heap Sockaddr, one allocation per client. The listener is
// non-blocking, so the call cannot sleep and is made as a raw system call.
func accept4(fd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(nfd), rawAddrPort(&rsa), nil
}

// rawAddrPort decodes an IPv4 or IPv6 socket address (port in network byte
// order); anything else is the zero AddrPort.
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// LocalAddr is the address socket fd is bound to (IPv4-mapped addresses
// unmapped), for callers that check sockets they inherited.
func LocalAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("getsockname", err)
	}
	return addrPort(sa), nil
}

// SameListen reports whether got, a bound address, is what want asks for
// (port 0: any port).
func SameListen(got, want netip.AddrPort) bool {
	return got.Addr() == want.Addr().Unmap() && (want.Port() == 0 || got.Port() == want.Port())
}

func setNoDelay(fd int) { _ = nbsys.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) }

// setLingerZero makes the next close send a RST instead of a FIN, so that a
// peer sees the reset that happened on the other side of the relay.
func setLingerZero(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

// adoptListener takes over an inherited listening socket (zero-downtime
// upgrade), checking that it is a listening TCP socket bound to want.
func adoptListener(fd int, want netip.AddrPort) (int, netip.AddrPort, error) {
	fail := func(err error) (int, netip.AddrPort, error) {
		return -1, want, fmt.Errorf("relay: inherited fd %d for %s: %w", fd, want, err)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
		return fail(fmt.Errorf("not a listening socket (%v)", err))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	got := addrPort(sa)
	if !SameListen(got, want) {
		return fail(fmt.Errorf("bound to %s", got))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail(err)
	}
	unix.CloseOnExec(fd)
	return fd, got, nil
}

// ListenSocket binds a listening TCP socket on ap (port 0: a free one) the
// way the relay binds its own: non-blocking, close-on-exec, SO_REUSEADDR,
// and SO_REUSEPORT if asked. A multi-process master binds its workers'
// sockets with it and hands them over as ListenerConfig.FDs.
func ListenSocket(ap netip.AddrPort, reuseport bool, backlog int) (int, netip.AddrPort, error) {
	if backlog <= 0 {
		backlog = defaultBacklog
	}
	return listenTCP(ap, reuseport, backlog)
}
