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

// pollBlock is epoll_wait that may sleep up to msec (-1: no limit).
func pollBlock(epfd int, evs []unix.EpollEvent, msec int) (int, error) {
	n, _, errno := syscall.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(msec), 0, 0)
	switch errno {
	case 0:
		return int(n), nil
	case unix.EINTR:
		return 0, nil
	}
	return 0, os.NewSyscallError("epoll_wait", errno)
}
