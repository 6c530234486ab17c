//go:build linux

package connector

import (
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/relayd/relayd/internal/evloop"
	"github.com/relayd/relayd/timeout"
	"golang.org/x/sys/unix"
)

// slot is one connect in flight. A worker has exactly MaxInflight of them,
// so the per-worker cap is structural, and each carries its own wheel timer
// bound once at New: the timer does not live in Request because callers
// assign fresh Request literals (which would wipe a bound timer and cost an
// allocation to re-bind per request). An active check has a slot of its own
// outside the free list (check != nil).
type slot struct {
	w     *worker
	r     *Request // nil while free
	fd    int      // socket of the current attempt, registered in the poller; -1 between attempts
	stage uint8    // what the armed timer means
	late  time.Duration
	timer timeout.Timer
	check *checker
}

const (
	stageNone     uint8 = iota
	stageLate           // the timer fires at the late threshold (a lost SYN)
	stageDeadline       // the timer fires at the attempt's deadline
)

// completion is a handler call to make once p.mu is released.
type completion struct {
	r   *Request
	fd  int
	err error
}

type worker struct {
	p        *Pool
	id       int
	loop     *evloop.Loop
	wakeF    func(any) error // method values bound once: a post allocates no closure
	checkOpF func(any) error
	st       counters

	// Guarded by p.mu.
	posted          bool       // a wake task is on the loop's queue and has not started
	full            bool       // no free slot: the worker pulls as slots free, nobody need wake it
	inflightCancels []*Request // canceled while in flight; the worker finds each one's slot
	armSweep        bool       // worker 0: arm the queue sweep

	// Loop goroutine only (the lists are appended to under p.mu, but only
	// by this goroutine, and drained by flush after the lock is released).
	slots    []slot
	free     []*slot
	fds      []*slot // fd → slot of the attempt registered under that fd
	sa       sockaddrs
	starts   []*slot       // slots filled by pullLocked, to dial
	done     []completion  // handler calls to make
	events   []HealthEvent // for Config.OnHealth
	wake     uint64        // workers to post to
	spare    []*Request    // the other inflightCancels buffer
	sweep    timeout.Timer // worker 0: expires queued requests at their deadline
	armPace  bool          // a locked step paced an upstream: flush arms the loop's alarm …
	paceWait time.Duration // … to fire after this (the soonest paced upstream's next start)
	checks   []*checker    // active checks this worker runs
}

func newWorker(p *Pool, id int) (*worker, error) {
	w := &worker{p: p, id: id}
	w.wakeF = w.wakeTask
	w.checkOpF = w.checkOp
	loop, err := evloop.New(p.cfg.Tick, w.onEvent)
	if err != nil {
		return nil, err
	}
	w.loop = loop
	// The pace releases starts every few hundred microseconds: an alarm of
	// its own, so the wheel need not tick that fast for every timeout.
	if err := loop.EnableAlarm(w.onPace); err != nil {
		loop.Stop()
		_ = loop.Run() // returns at once: closes what New opened
		return nil, err
	}
	w.paceWait = maxPaceWait
	w.slots = make([]slot, p.cfg.MaxInflight)
	w.free = make([]*slot, 0, p.cfg.MaxInflight)
	for i := len(w.slots) - 1; i >= 0; i-- {
		s := &w.slots[i]
		s.w, s.fd = w, -1
		s.timer.Init(s.onTimeout)
		w.free = append(w.free, s)
	}
	w.sweep.Init(w.onSweep)
	w.fds = make([]*slot, minFDs)
	return w, nil
}

// run is the worker goroutine: the loop, then the final drain. Everything
// the worker owns is touched only here.
func (w *worker) run() error {
	err := w.loop.Run()
	w.drain()
	return err
}

// --- slots ---

// takeSlot and releaseSlot keep the in-flight gauge with the free list.
func (w *worker) takeSlot() *slot {
	s := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	if n := w.st.inflight.Add(1); n > w.st.high.Load() {
		w.st.high.Store(n) // only this goroutine writes high
	}
	return s
}

func (w *worker) releaseSlot(s *slot) {
	s.r, s.stage = nil, stageNone
	w.free = append(w.free, s)
	w.st.inflight.Add(-1)
}

func (w *worker) finishLater(r *Request, err error) {
	w.done = append(w.done, completion{r: r, fd: -1, err: err})
}

func (w *worker) connectedLater(r *Request, fd int) {
	w.done = append(w.done, completion{r: r, fd: fd})
}

// --- loop goroutine ---

// wakeTask is the task Submit, Cancel and other workers post: complete
// requests canceled while queued, abort in-flight ones that were canceled,
// start queued ones.
func (w *worker) wakeTask(any) error {
	p := w.p
	now := time.Now()
	p.mu.Lock()
	w.posted = false
	c := p.cancels
	p.cancels = nil
	ic := w.inflightCancels
	w.inflightCancels = w.spare[:0]
	arm := w.armSweep
	w.armSweep = false
	for c != nil {
		next := c.next
		c.next = nil
		w.finishLater(c, ErrCanceled)
		c = next
	}
	// In-flight cancels: each request names its slot, so this costs one
	// check per cancel, not a scan of every slot. The checks make a stale
	// entry harmless: a request that finished meanwhile has no slot, and
	// one that was reused since is in another slot, or not canceled.
	for i, r := range ic {
		ic[i] = nil
		s := r.s
		if s == nil || r.w != w || s.r != r || r.state.Load()&canceledBit == 0 {
			continue
		}
		if fd := s.fd; fd >= 0 {
			w.unregister(s)
			w.closeLater(fd)
		}
		p.endAttemptLocked(w, s, -1, ErrCanceled, now)
	}
	w.spare = ic
	p.pullLocked(w, now)
	p.mu.Unlock()
	if arm {
		w.loop.Wheel().Schedule(&w.sweep, w.sweepEvery(), w.loop.Refresh())
	}
	w.flush()
	return nil
}

// flush does what the locked steps queued: handler calls, dials (which
// may queue more of both), wake-ups of other workers, health reports.
func (w *worker) flush() {
	for len(w.done) > 0 || len(w.starts) > 0 {
		for i := 0; i < len(w.done); i++ {
			c := w.done[i]
			w.done[i] = completion{}
			w.complete(c.r, c.fd, c.err) // the handler may Submit: that never appends here
		}
		w.done = w.done[:0]
		for i := 0; i < len(w.starts); i++ { // dial may append (a failure pulls the next)
			s := w.starts[i]
			w.starts[i] = nil
			w.dial(s)
		}
		w.starts = w.starts[:0]
	}
	if m := w.wake; m != 0 {
		w.wake = 0
		w.p.post(m)
	}
	if w.armPace {
		w.armPace = false
		w.loop.Alarm(w.paceWait)
		w.paceWait = maxPaceWait
	}
	if len(w.events) > 0 {
		if f := w.p.cfg.OnHealth; f != nil {
			for _, ev := range w.events {
				f(ev)
			}
		}
		clear(w.events)
		w.events = w.events[:0]
	}
}

// endAttempt ends the attempt in s and refills free slots; the caller
// flushes.
func (w *worker) endAttempt(s *slot, fd int, err error) {
	now := time.Now()
	w.p.mu.Lock()
	w.p.endAttemptLocked(w, s, fd, err, now)
	w.p.pullLocked(w, now)
	w.p.mu.Unlock()
}

// dial starts the attempt of the request pullLocked put in s. Immediate
// failures end the attempt here (which may queue the next dial in
// w.starts; flush loops rather than recursing).
func (w *worker) dial(s *slot) {
	r := s.r
	u := r.ups // stable while r holds s
	var ap netip.AddrPort
	if u.direct {
		ap = r.Addrs[r.tried%len(r.Addrs)]
	} else {
		ap = u.key.Addr
	}
	now := time.Now()
	r.attStart, r.Addr = now, ap
	if r.resend {
		r.resend = false
	} else {
		r.Attempts++
		w.st.attempts.Add(1)
	}
	fd, inProgress, err := w.sa.dial(ap, r.Source)
	if err != nil {
		w.endAttempt(s, -1, err)
		return
	}
	if !inProgress { // connected at once; never registered
		w.endAttempt(s, fd, nil)
		return
	}
	// One-shot: the event that ends the connect disarms the registration,
	// so a socket handed off connected can stay registered here, silent,
	// until its owner's close removes it (unregisterHandedOff): one
	// epoll_ctl fewer per session.
	if err := w.loop.Add(fd, evloop.WriteEvents|evloop.OneShot); err != nil {
		closeFD(fd) // never registered: safe to close now
		w.endAttempt(s, -1, err)
		return
	}
	s.fd = fd
	w.setFD(fd, s)
	rem := r.enq.Add(r.timeout).Sub(now)
	if s.late > 0 && s.late < rem {
		s.stage = stageLate
		w.loop.Wheel().Schedule(&s.timer, s.late, w.loop.Refresh())
	} else {
		s.stage = stageDeadline
		w.loop.Wheel().Schedule(&s.timer, max(rem, 0), w.loop.Refresh())
	}
}

// minFDs is the size the fd table starts at and is never shrunk below.
const minFDs = 1024

// shrink reallocates the fd table to the smallest power of two (at least
// minFDs) above the highest fd registered, if that halves it at least. The
// table grows to the highest fd number the process reached (connect
// sockets take numbers among the sessions'), and would keep that size when
// every session is gone. Worker goroutine only.
func (w *worker) shrink() {
	top := len(w.fds) - 1
	for top >= 0 && w.fds[top] == nil {
		top--
	}
	n := minFDs
	for n < top+1 {
		n *= 2
	}
	if n <= len(w.fds)/2 {
		w.fds = append(make([]*slot, 0, n), w.fds[:n]...)
	}
}

func (w *worker) setFD(fd int, s *slot) {
	for fd >= len(w.fds) {
		w.fds = append(w.fds, make([]*slot, len(w.fds))...)
	}
	w.fds[fd] = s
}

// onEvent handles readiness of a connecting socket.
func (w *worker) onEvent(fd int, ev evloop.IOEvent) {
	if fd >= len(w.fds) || w.fds[fd] == nil {
		// Not ours any more. With Delete-before-close and closes deferred
		// past the batch (closeLater) this cannot happen; ignoring is the
		// safe answer if it ever does.
		return
	}
	s := w.fds[fd]
	writable, hup := connectDone(ev)
	var errno unix.Errno
	if !writable || hup {
		// Writable without error or hang-up means connected on Linux (as
		// connect(2) reports through SO_ERROR): one getsockopt saved per
		// connect on the common path (review P4).
		errno = soError(fd)
	}
	if errno == 0 && !writable && !hup {
		// Spurious wake-up: keep waiting, re-armed (one-shot).
		_ = w.loop.Mod(fd, evloop.WriteEvents|evloop.OneShot)
		return
	}
	if errno == 0 && writable && !hup && s.check == nil {
		w.unregisterHandedOff(s)
		w.endAttempt(s, fd, nil)
		w.flush()
		return
	}
	w.unregister(s)
	var err error
	switch {
	case errno != 0:
		err = os.NewSyscallError("connect", errno)
	case !writable: // hang-up without an error or writability
		err = errHangup
	}
	if s.check != nil {
		w.closeLater(fd)
		s.check.result(err)
		return
	}
	if err != nil {
		w.closeLater(fd)
		fd = -1
	}
	w.endAttempt(s, fd, err)
	w.flush()
}

// onTimeout is the slot timer: the attempt is late (stageLate) or past its
// deadline.
//
// A starved worker can find the deadline and the connect's own outcome in
// the same event batch, tick first. If the kernel already failed the connect
// (SO_ERROR set), that failure is what happened, so it is what is counted. A
// connect that succeeded just too late is still a timeout: completing it from
// here would hand off an fd whose event is still pending further down this
// batch, and if its new owner closed it at once, a socket() of ours could
// reuse the number and receive that event (see closeLater).
func (s *slot) onTimeout(time.Time) {
	w := s.w
	if s.check != nil {
		s.check.onTimer()
		return
	}
	fd := s.fd
	errno := soError(fd)
	if s.stage == stageLate && errno == 0 {
		w.onLate(s)
		return
	}
	var err error = ErrTimeout
	if errno != 0 {
		err = os.NewSyscallError("connect", errno)
	}
	w.unregister(s)
	w.closeLater(fd)
	w.endAttempt(s, -1, err)
	w.flush()
}

// onLate handles an attempt unanswered past its late threshold. One that
// is connected has its event pending (this batch or the next) and just
// waits on; otherwise the SYN was lost (sched.go, lateLocked).
func (w *worker) onLate(s *slot) {
	r := s.r
	rem := time.Until(r.enq.Add(r.timeout))
	if connected(s.fd) {
		s.stage = stageDeadline
		w.loop.Wheel().Schedule(&s.timer, max(rem, 0), w.loop.Refresh())
		return
	}
	giveUp := r.ups.pace.adaptive // fixed at the upstream's creation
	if giveUp {
		fd := s.fd
		w.unregister(s)
		w.closeLater(fd)
	}
	now := time.Now()
	w.p.mu.Lock()
	w.p.lateLocked(w, s, now, giveUp)
	if giveUp {
		w.p.pullLocked(w, now)
	}
	w.p.mu.Unlock()
	if !giveUp {
		s.stage = stageDeadline
		w.loop.Wheel().Schedule(&s.timer, max(rem, 0), w.loop.Refresh())
	}
	w.flush()
}

// sweepEvery is the queue sweep's period: a twentieth of the connect
// timeout (so a queued request expires within 5% of it), between one tick
// and 100 ms.
func (w *worker) sweepEvery() time.Duration {
	return min(max(w.p.cfg.ConnectTimeout/20, w.p.cfg.Tick), 100*time.Millisecond)
}

// onSweep (worker 0) fails queued requests whose attempt deadline passed
// while they waited for a slot, and re-arms while anything is queued.
func (w *worker) onSweep(time.Time) {
	p := w.p
	now := time.Now()
	p.mu.Lock()
	for _, u := range p.all {
		for r := u.head; r != nil; {
			next := r.next
			if !now.Before(r.enq.Add(r.timeout)) {
				p.unlinkLocked(r)
				if r.state.Load()&canceledBit != 0 {
					w.finishLater(r, ErrCanceled)
				} else {
					p.queueTimeoutLocked(w, r, now)
					if !u.health.up {
						break // it went down: its queue has moved on (evacuateLocked)
					}
				}
			}
			r = next
		}
		p.updateReadyLocked(u)
	}
	again := p.queued > 0
	p.sweeping = again
	p.pullLocked(w, now)
	p.mu.Unlock()
	if again {
		w.loop.Wheel().Schedule(&w.sweep, w.sweepEvery(), w.loop.Refresh())
	}
	w.flush()
}

// maxPaceWait bounds one alarm: a paced upstream is looked at again at
// least this often.
const maxPaceWait = 10 * time.Millisecond

// onPace (the loop's alarm) puts paced upstreams whose rate allows a start
// back in the ready ring and pulls; it re-arms for the soonest of those
// still paced. Any worker that paced an upstream arms one, so a worker that
// is busy elsewhere does not hold the others up.
func (w *worker) onPace(time.Time) {
	p := w.p
	now := time.Now()
	p.mu.Lock()
	keep := p.paced[:0]
	for _, u := range p.paced {
		if d := u.pace.wait(now); d == 0 {
			u.paced = false
			p.updateReadyLocked(u)
		} else {
			keep = append(keep, u)
			w.paceWait = min(w.paceWait, d)
			w.armPace = true
		}
	}
	clear(p.paced[len(keep):])
	p.paced = keep
	p.pullLocked(w, now)
	p.mu.Unlock()
	w.flush()
}

// unregister takes the current attempt's fd out of the poller, the fd table
// and the wheel. The fd itself stays open; the caller closes it (later) or
// hands it off.
func (w *worker) unregister(s *slot) {
	w.loop.Wheel().Stop(&s.timer)
	if s.fd < 0 {
		return
	}
	_ = w.loop.Delete(s.fd)
	w.fds[s.fd] = nil
	s.fd = -1
}

// unregisterHandedOff is unregister for a socket whose connect just
// succeeded and is handed off: its one-shot registration has fired and is
// disarmed, so it reports nothing more here, and the kernel drops it when
// the socket's last descriptor is closed (by its new owner; relayd never
// duplicates these fds). The fd-reuse rule holds as with a Delete: no event
// for this socket can reach this worker again, so a later socket() that
// gets the number back starts clean.
func (w *worker) unregisterHandedOff(s *slot) {
	w.loop.Wheel().Stop(&s.timer)
	w.fds[s.fd] = nil
	s.fd = -1
}

// closeLater closes fd after the current batch of events.
//
// Why not close at once: epoll_wait hands the loop a batch of events that
// were collected before any of them is handled. If the handler of an earlier
// event (or a timer firing in the tick event of the same batch) closed fd N
// and the next attempt's socket() got the number N back, an event collected
// for the old socket further down the batch would be looked up as the new
// attempt — SO_ERROR of a connect still in progress is 0, so a stale
// "writable" would hand over a socket that is not connected. Keeping every
// fd that was registered open until the batch is over means socket() cannot
// return a number that has an event pending; the closes run from a posted
// task, which the poller runs only after the whole batch. Delete always comes
// first, so the closed fd has no registration left to report on.
//
// (fds handed off are not affected: their one event in the batch was the
// one that completed them, and they left the poller before the hand-off.)
func (w *worker) closeLater(fd int) { w.loop.CloseAfterRound(fd) }

// complete publishes the result and calls the handler: ownership of r and fd
// passes to the caller here. Nothing touches either after Connected.
func (w *worker) complete(r *Request, fd int, err error) {
	for {
		st := r.state.Load()
		if st&canceledBit != 0 {
			err = ErrCanceled // also over ErrClosed: the caller asked first
		}
		if r.state.CompareAndSwap(st, phaseDone) {
			break
		}
	}
	if err != nil && fd >= 0 {
		// Canceled after the connect succeeded. The fd is not registered
		// (never was, or was deleted with its event consumed), so no stale
		// event can name it; still keep to the one rule and defer.
		w.closeLater(fd)
		fd = -1
	}
	if fd >= 0 && w.p.cfg.NoDelay {
		setNoDelay(fd)
	}
	r.FD, r.Err = fd, err
	r.Latency = time.Since(r.start)
	switch {
	case err == nil:
		w.st.connected.Add(1)
		w.st.observe(r.Latency)
	case err == ErrCanceled:
		w.st.canceled.Add(1)
	case err == ErrClosed:
		w.st.closed.Add(1)
	case err == ErrUpstreamsDown:
		w.st.failed.Add(1)
		w.st.downFailed.Add(1)
	default:
		w.st.failed.Add(1)
	}
	r.Handler.Connected(r) // ownership passes here
}

// drain runs on the worker goroutine after the loop has stopped (Close, or a
// poller failure): refuse further Submits and complete everything left with
// ErrClosed (ErrCanceled if it was canceled). The poller is closed: no
// batch, no event, so closing at once is safe.
func (w *worker) drain() {
	p := w.p
	p.mu.Lock()
	p.isClosed = true
	for _, u := range p.all {
		for u.head != nil {
			r := u.head
			p.unlinkLocked(r)
			w.finishLater(r, ErrClosed)
		}
		p.updateReadyLocked(u)
	}
	for c := p.cancels; c != nil; {
		next := c.next
		c.next = nil
		w.finishLater(c, ErrCanceled)
		c = next
	}
	p.cancels = nil
	w.inflightCancels = nil
	for i := range w.slots {
		s := &w.slots[i]
		if s.r == nil {
			continue
		}
		w.loop.Wheel().Stop(&s.timer)
		if s.fd >= 0 {
			w.fds[s.fd] = nil
			closeFD(s.fd)
			s.fd = -1
		}
		r := s.r
		r.ups.inflight--
		r.s, r.w = nil, nil
		w.releaseSlot(s)
		w.finishLater(r, ErrClosed)
	}
	for _, c := range slices.Clone(w.checks) { // haltLocked removes c from w.checks
		c.haltLocked()
	}
	w.checks = nil
	p.mu.Unlock()
	w.starts = w.starts[:0]
	for _, c := range w.done {
		w.complete(c.r, c.fd, c.err)
	}
	w.done = nil
	w.loop.FlushCloses()
}
