//go:build !linux

package connector

import (
	"net/netip"
	"os"
	"syscall"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
)

// The connector's socket layer is written for Linux (SOCK_NONBLOCK|
// SOCK_CLOEXEC in one call, epoll semantics for Delete). Elsewhere New
// returns ErrUnsupported; the stubs below only keep the package compiling.
const supported = false

type sockaddrs struct{}

func (*sockaddrs) dial(netip.AddrPort) (int, bool, error) {
	return -1, false, ErrUnsupported
}

func soError(int) syscall.Errno { return syscall.EINVAL }

func connectDone(ev netpoll.IOEvent) (writable, failed bool) { return false, true }

func setNoDelay(int) {}

func closeFD(fd int) { _ = syscall.Close(fd) }

var errHangup = os.NewSyscallError("connect", syscall.ECONNRESET)
