//go:build linux

package evloop

import (
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"
)

// ticker is a periodic timerfd registered in the loop's own poller.
type ticker struct {
	fd  int
	buf [8]byte
}

func (t *ticker) open(l *Loop) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return err
	}
	ts := unix.NsecToTimespec(int64(l.tick / time.Nanosecond))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return err
	}
	if err := l.poller.AddRead(&netpoll.PollAttachment{FD: fd}, false); err != nil {
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

// arm sets the period; 0 stops the timer.
func (t *ticker) arm(period time.Duration) {
	ts := unix.NsecToTimespec(int64(period))
	_ = unix.TimerfdSettime(t.fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil)
}

func (t *ticker) is(fd int) bool { return fd == t.fd }

// drain reads the expiration count so the level-triggered fd goes quiet.
func (t *ticker) drain() { _, _ = unix.Read(t.fd, t.buf[:]) }

func (t *ticker) close() { _ = unix.Close(t.fd) }
