//go:build linux

package evloop

import (
	"time"

	"golang.org/x/sys/unix"
)

// ticker is a one-shot timerfd registered in the loop's own epoll set: the
// alarm, for deadlines finer than epoll's millisecond timeout.
type ticker struct {
	fd  int
	buf [8]byte
}

func (t *ticker) open(l *Loop) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return err
	}
	if err := l.Add(fd, ReadEvents); err != nil {
		unix.Close(fd)
		return err
	}
	t.fd = fd
	return nil
}

// once arms a single expiry after d (at least 1 ns); 0 disarms.
func (t *ticker) once(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_ = unix.TimerfdSettime(t.fd, 0, &unix.ItimerSpec{Value: ts}, nil)
}

func (t *ticker) is(fd int) bool { return fd == t.fd }

// drain reads the expiration count so the level-triggered fd goes quiet.
func (t *ticker) drain() { _, _ = unix.Read(t.fd, t.buf[:]) }

func (t *ticker) close() { _ = unix.Close(t.fd) }
