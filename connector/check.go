//go:build linux

package connector

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/relayd/relayd/internal/evloop"
)

// checker is an upstream's active health check: a TCP connect every
// Interval, bounded by Timeout, run by one worker on its own poller and
// wheel like any connect (a slot outside the free list, so checks never
// take a session's slot and never count against a cap). No goroutine per
// upstream; a worker with N checks has N timers.
type checker struct {
	u   *Upstream
	w   *worker
	cfg CheckConfig

	stop bool // guarded by p.mu: SetUpstreams replaced or retired it

	// Worker goroutine only.
	s       slot
	started bool
	probing bool // a check connect is in flight (the timer is its timeout)
}

// checkOp is the task SetUpstreams posts to start or stop a check.
func (w *worker) checkOp(arg any) error {
	c := arg.(*checker)
	w.p.mu.Lock()
	stop := c.stop
	if stop {
		c.haltLocked()
	}
	w.p.mu.Unlock()
	if stop || c.started {
		return nil
	}
	c.started = true
	c.s = slot{w: w, fd: -1, check: c}
	c.s.timer.Init(c.s.onTimeout)
	w.checks = append(w.checks, c)
	// The first check runs at once: a new upstream's state is known
	// within one timeout rather than one interval.
	w.loop.Wheel().Schedule(&c.s.timer, 0, w.loop.Refresh())
	return nil
}

// haltLocked stops the check for good (worker goroutine, under p.mu).
func (c *checker) haltLocked() {
	w := c.w
	if !c.started {
		return
	}
	if fd := c.s.fd; fd >= 0 {
		w.unregister(&c.s)
		w.closeLater(fd)
	}
	w.loop.Wheel().Stop(&c.s.timer)
	c.probing = false
	for i, v := range w.checks {
		if v == c {
			w.checks = append(w.checks[:i], w.checks[i+1:]...)
			break
		}
	}
}

// onTimer starts the next check, or times the running one out.
func (c *checker) onTimer() {
	w := c.w
	if c.probing {
		fd := c.s.fd
		var err error = ErrTimeout
		if errno := soError(fd); errno != 0 {
			err = os.NewSyscallError("connect", errno)
		}
		w.unregister(&c.s)
		w.closeLater(fd)
		c.result(err)
		return
	}
	if AdminState(c.u.admin.Load()) == Disabled {
		// Out for maintenance: no probe, and so no flapping; look again
		// at the next interval.
		w.loop.Wheel().Schedule(&c.s.timer, c.cfg.Interval, w.loop.Refresh())
		return
	}
	fd, inProgress, err := w.sa.dial(c.u.key.Addr, netip.Addr{})
	switch {
	case err != nil:
		c.result(err)
		return
	case !inProgress:
		closeFD(fd) // never registered
		c.result(nil)
		return
	}
	if err := w.loop.Add(fd, evloop.WriteEvents); err != nil {
		closeFD(fd)
		c.result(err)
		return
	}
	c.probing = true
	c.s.fd = fd
	w.setFD(fd, &c.s)
	w.loop.Wheel().Schedule(&c.s.timer, c.cfg.Timeout, w.loop.Refresh())
}

// result records one check (nil = the upstream accepted the connect) and
// schedules the next.
func (c *checker) result(err error) {
	w, p, u := c.w, c.w.p, c.u
	c.probing = false
	now := time.Now()
	p.mu.Lock()
	if c.stop || u.check != c {
		p.mu.Unlock()
		return // replaced meanwhile; checkOp halts it
	}
	u.st.checks++
	h := &u.health
	if err == nil {
		h.badChecks = 0
		h.okChecks++
		if !h.up && h.okChecks >= c.cfg.Rise {
			p.markUpLocked(w, u, now, fmt.Sprintf("%d checks passed", h.okChecks))
			p.pullLocked(w, now)
		}
	} else {
		u.st.checkFails++
		h.okChecks = 0
		h.badChecks++
		if h.up && h.badChecks >= c.cfg.Fall {
			p.markDownLocked(w, u, now, fmt.Sprintf("%d checks failed (last: %s)", h.badChecks, Classify(err)))
		}
	}
	p.mu.Unlock()
	w.loop.Wheel().Schedule(&c.s.timer, c.cfg.Interval, w.loop.Refresh())
	w.flush()
}
