//go:build linux

package evloop

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// IOEvent is the epoll event mask delivered to a Handler.
type IOEvent = uint32

// Event masks: what a Handler tests, and what Add and Mod register.
const (
	ReadEvents  IOEvent = unix.EPOLLIN | unix.EPOLLPRI
	WriteEvents IOEvent = unix.EPOLLOUT
	ErrEvents   IOEvent = unix.EPOLLERR | unix.EPOLLHUP
	// OneShot (with Add or Mod): the first event disarms the registration
	// until the next Mod; the fd stays registered, reporting nothing.
	OneShot IOEvent = unix.EPOLLONESHOT
)

// Add registers fd for events (level-triggered; 0 registers it with no
// interest, so a later Mod is one call). Loop goroutine only.
func (l *Loop) Add(fd int, events IOEvent) error {
	return ctl(l.epfd, unix.EPOLL_CTL_ADD, fd, events)
}

// Mod replaces fd's registered events. Loop goroutine only.
func (l *Loop) Mod(fd int, events IOEvent) error {
	return ctl(l.epfd, unix.EPOLL_CTL_MOD, fd, events)
}

// Delete removes fd from the poller. Loop goroutine only.
func (l *Loop) Delete(fd int) error {
	return ctl(l.epfd, unix.EPOLL_CTL_DEL, fd, 0)
}

func ctl(epfd, op, fd int, events IOEvent) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(epfd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// pollNow is epoll_wait with a zero timeout as a raw system call: it cannot
// block, so it skips the scheduler's entersyscall/exitsyscall, and a busy
// loop that finds events waiting never hands its P away.
func pollNow(epfd int, evs []unix.EpollEvent) int {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if errno != 0 {
		return 0 // EINTR: the caller polls again
	}
	return int(n)
}

// pollBlock is epoll_wait that may sleep up to msec (-1: no limit), with
// the loop's P kept (syscall.Syscall6) or, with handoff, given away first
// (epollWaitBlock). Loop.sleep picks.
func pollBlock(epfd int, evs []unix.EpollEvent, msec int, handoff bool) (int, error) {
	var n uintptr
	var errno syscall.Errno
	if handoff {
		n, errno = epollWaitBlock(epfd, &evs[0], len(evs), msec)
	} else {
		n, _, errno = syscall.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
			uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(msec), 0, 0)
	}
	switch errno {
	case 0:
		return int(n), nil
	case unix.EINTR:
		return 0, nil
	}
	return 0, os.NewSyscallError("epoll_wait", errno)
}

// epollWaitBlock is epoll_wait entered the way the runtime enters a call it
// knows will block: entersyscallblock gives the loop's P away before the
// call, instead of syscall.Syscall6's entersyscall, which keeps it.
//
// Why: with the P kept, every sleeping loop holds a P in _Psyscall; on 2 Ps
// with 2 loops none is idle, so sysmon retakes each sleeping loop's P after
// 20 µs and, because it keeps finding one to retake, polls at its fastest
// (usleep(20), ~50 kHz). That polling was 37% of relayd's context switches
// and ~11% of its CPU on short sessions (perf, rr 64 B ×50; internal/nbsys
// has the other half of the cure). Given away, the P is idle
// while the loop sleeps, sysmon finds nothing to retake and backs off to
// its 10 ms sleep (or parks when every P is idle), and the loop takes an
// idle P back on return (exitsyscall's fast path).
//
// The pair is the runtime's own, reached by linkname: both are kept for
// linkname by the runtime (go.dev/issue/67401, "hall of shame": gVisor).
// Between them the goroutine has no P, so this function may call nothing
// that can grow the stack, allocate or take a lock: only the raw system
// call (nosplit, norace, assembly underneath). Straight-line on purpose:
// coverage instrumentation puts its counter at the function's entry, before
// the P is given away.
//
//go:nosplit
//go:norace
func epollWaitBlock(epfd int, ev *unix.EpollEvent, n, msec int) (uintptr, syscall.Errno) {
	entersyscallblock()
	r, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(ev)), uintptr(n), uintptr(msec), 0, 0)
	exitsyscall()
	return r, errno
}

//go:linkname entersyscallblock runtime.entersyscallblock
func entersyscallblock()

//go:linkname exitsyscall runtime.exitsyscall
func exitsyscall()
