//go:build linux

package nbsys

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

var zero byte

// base is p's first byte, or a valid address for an empty p (the kernel
// reads no byte of it).
func base(p []byte) unsafe.Pointer {
	if len(p) == 0 {
		return unsafe.Pointer(&zero)
	}
	return unsafe.Pointer(&p[0])
}

func result(r uintptr, e syscall.Errno) (int, error) {
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func errOf(e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// Read is read(2) on a non-blocking fd.
func Read(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(base(p)), uintptr(len(p)))
	return result(r, e)
}

// Write is write(2) on a non-blocking fd. A socket relayd writes to may
// have been reset by its peer: SIGPIPE is ignored by the Go runtime for
// fds other than 1 and 2, so EPIPE comes back as an error.
func Write(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(base(p)), uintptr(len(p)))
	return result(r, e)
}

// Shutdown is shutdown(2).
func Shutdown(fd, how int) error {
	_, _, e := syscall.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return errOf(e)
}

// Close is close(2) of a socket, pipe or eventfd. Only for descriptors
// whose close cannot sleep: no SO_LINGER with a non-zero time (linger 0,
// relayd's reset, does not wait).
func Close(fd int) error {
	_, _, e := syscall.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return errOf(e)
}

// Socket is socket(2); pass SOCK_NONBLOCK.
func Socket(family, typ, proto int) (int, error) {
	r, _, e := syscall.RawSyscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ), uintptr(proto))
	return result(r, e)
}

// SetsockoptInt is setsockopt(2) of an int option.
func SetsockoptInt(fd, level, opt, v int) error {
	iv := int32(v)
	_, _, e := syscall.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&iv)), 4, 0)
	return errOf(e)
}

// Connect is connect(2) of a non-blocking socket to ap (an IPv4, IPv4-in-
// IPv6 or IPv6 address; zone is the IPv6 scope id): nil or EINPROGRESS
// (or EINTR, which means the same on a non-blocking socket), or the error.
// The address is built on the stack: no allocation.
func Connect(fd int, ap netip.AddrPort, zone uint32) error {
	a := ap.Addr()
	var e syscall.Errno
	if a.Is4() || a.Is4In6() {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		putPort(&sa.Port, ap.Port())
		_, _, e = syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)
	} else {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Scope_id: zone}
		putPort(&sa.Port, ap.Port())
		_, _, e = syscall.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet6)
	}
	return errOf(e)
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}

// Splice is splice(2) between a socket and a pipe, without offsets; pass
// SPLICE_F_NONBLOCK.
func Splice(in, out, n, flags int) (int, error) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), uintptr(flags))
	return result(r, e)
}
