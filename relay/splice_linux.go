//go:build linux

package relay

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/nbsys"
)

// Splice: a bulk direction moves its bytes socket → pipe → socket inside
// the kernel (splice(2)), with no copy through user space and no scratch
// buffer, as HAProxy's "option splice-auto" does.
//
// When: a direction switches after spliceAfter reads in a row filled the
// loop's scratch buffer and were written on whole (a stream, not a request
// and a response), if Config.Splice allows it and the loop's pipe pool has
// a pipe to give. It keeps the pipe until the direction ends; then an empty
// pipe goes back to the pool and one that still holds bytes (a reset, a
// broken peer) is closed.
//
// Backpressure is unchanged: the source is read only while the direction
// has nothing pending, and bytes in the pipe are pending. One splice into
// the pipe moves at most its capacity (Config.SplicePipeSize), so that is
// the direction's bound while it splices, in kernel pages instead of a
// user-space buffer.
//
// fds: a pipe is two descriptors. The pool is capped per loop
// (Config.SplicePipes) and counted in the daemon's descriptor reserve, so
// splicing never takes an fd a session needs; when the pool is used up, a
// direction stays on read/write. Pipes are never registered in epoll, so
// closing one at once cannot meet a stale event.

// spliceAfter is the number of full scratch reads in a row that make a
// direction bulk: with the default 32 KiB scratch, 128 KiB streamed. 0
// splices from a direction's first relaying read (tests, export_test.go).
var spliceAfter uint8 = 4

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// pipe is one kernel pipe of a loop's pool.
type pipe struct{ r, w int }

// pipePool is a loop's pipes. A direction names its pipe by index (an
// int16 in dir keeps the session as small as before splicing existed).
type pipePool struct {
	pipes []pipe  // every pipe opened; index stable, r -1 once closed
	free  []int16 // indexes of empty pipes ready to lend
	open  int
	max   int // Config.SplicePipes; 0: splicing off
	size  int // capacity each pipe is given (F_SETPIPE_SZ)
}

// get lends a pipe, opening one while the pool is under its cap.
func (pp *pipePool) get() (int16, bool) {
	if n := len(pp.free); n > 0 {
		i := pp.free[n-1]
		pp.free = pp.free[:n-1]
		return i, true
	}
	if pp.open >= pp.max {
		return 0, false
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return 0, false
	}
	// Above /proc/sys/fs/pipe-max-size (which an unprivileged process may
	// not exceed) the pipe keeps the kernel's default, 64 KiB: still a bound.
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pp.size)
	pp.open++
	p := pipe{r: fds[0], w: fds[1]}
	for i := range pp.pipes { // a slot a closed pipe left
		if pp.pipes[i].r < 0 {
			pp.pipes[i] = p
			return int16(i), true
		}
	}
	pp.pipes = append(pp.pipes, p)
	return int16(len(pp.pipes) - 1), true
}

// put takes pipe i back; a dirty one is closed instead (the bytes it still
// holds belong to a direction that is gone).
func (pp *pipePool) put(i int16, dirty bool) {
	if !dirty {
		pp.free = append(pp.free, i)
		return
	}
	p := &pp.pipes[i]
	_ = nbsys.Close(p.r)
	_ = nbsys.Close(p.w)
	p.r, p.w = -1, -1
	pp.open--
}

// closeAll closes the free pipes (the loop is ending; lent ones go with
// their sessions).
func (pp *pipePool) closeAll() {
	for _, i := range pp.free {
		pp.put(i, true)
	}
	pp.free = nil
}

// maybeSplice counts a full scratch read of d that was written on whole, and
// switches d to splicing after spliceAfter of them in a row.
func (s *session) maybeSplice(d *dir) {
	if d.spliced || d.fulls == 0xff {
		return
	}
	if d.fulls++; d.fulls < spliceAfter {
		return
	}
	i, ok := s.loop.pipes.get()
	if !ok {
		d.fulls = 0xff // the pool is used up: this direction stays on read/write
		return
	}
	d.pipe, d.spliced = i, true
	s.loop.st.spliced.Add(1)
}

// unsplice gives d's pipe back, or closes it if bytes are left in it.
func (s *session) unsplice(d *dir) {
	if !d.spliced {
		return
	}
	s.loop.pipes.put(d.pipe, d.pending() > 0)
	d.spliced, d.off, d.end = false, 0, 0
}

// spliceRounds bounds the pipe-fulls one event moves, so that one bulk
// session cannot hold its loop for long.
const spliceRounds = 4

// readSplice is read for a spliced direction: source → pipe → destination,
// a few rounds per event while the source fills the pipe and the
// destination takes it all. Only called with nothing pending. It reports
// false if the session was closed.
func (s *session) readSplice(d *dir, side uint8, srcFD, dstFD int) bool {
	pp := &s.loop.pipes
	p := pp.pipes[d.pipe]
	for range spliceRounds {
		n, err := nbsys.Splice(srcFD, p.w, pp.size, spliceFlags)
		if n <= 0 {
			return s.afterRead(d, 0, err, side) // n == 0, err == nil: EOF
		}
		d.off, d.end = 0, int32(n)
		if !s.drainPipe(d, side, dstFD) {
			return false
		}
		if d.pending() > 0 {
			s.pause(d)
			return true
		}
		if int(n) < pp.size {
			return true
		}
	}
	return true
}

// drainPipe moves what d's pipe holds to dstFD, as far as it takes it. It
// reports false if the session was closed.
func (s *session) drainPipe(d *dir, side uint8, dstFD int) bool {
	r := s.loop.pipes.pipes[d.pipe].r
	for d.pending() > 0 {
		w, err := nbsys.Splice(r, dstFD, d.pending(), spliceFlags)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				return true
			}
			return s.broken(d)
		}
		if w == 0 {
			return true
		}
		s.count(d, side, int(w))
		d.off += int32(w)
	}
	d.off, d.end = 0, 0
	return true
}
