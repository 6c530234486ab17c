//go:build linux

package connector

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"

	"github.com/relayd/relayd/internal/evloop"
	"github.com/relayd/relayd/timeout"
)

// slot is one connect in flight. A worker has exactly MaxInflight of them,
// so the cap is structural, and each carries its own wheel timer bound once
// at New: the timer does not live in Request because callers assign fresh
// Request literals (which would wipe a bound timer and cost an allocation to
// re-bind per request).
type slot struct {
	w       *worker
	r       *Request // nil while free
	fd      int      // socket of the current attempt, registered in the poller; -1 between attempts
	tries   int
	timeout time.Duration
	lastErr error
	timer   timeout.Timer
}

type worker struct {
	p     *Pool
	id    int
	loop  *evloop.Loop
	wakeF func(any) error // method values bound once: a post allocates no closure (gnet's task queue still allocates a node per post, one more reason posts are rare)
	st    counters
	load  atomic.Int64 // queued + in flight on this worker, for least-loaded choice

	// mu guards the FIFO (head, tail, and the requests' prev/next/inQueue),
	// the cancel list and the flags below. It is the only lock on the path,
	// held for a few pointer moves.
	mu              sync.Mutex
	head            *Request
	tail            *Request
	cancels         *Request   // canceled while queued, waiting for the worker to complete them
	posted          bool       // a wake task is on the loop's queue and has not started
	full            bool       // no free slot: the worker pulls from the FIFO as slots free, Submit need not wake it
	inflightCancels []*Request // canceled while in flight; the worker finds each one's slot (mu)
	closed          bool       // Close was called, or the loop ended: Submit refuses

	// Loop goroutine only.
	slots []slot
	free  []*slot
	fds   []*slot // fd → slot of the attempt registered under that fd
	freed bool    // a slot was freed since the last pull
	sa    sockaddrs
}

func newWorker(p *Pool, id int) (*worker, error) {
	w := &worker{p: p, id: id}
	w.wakeF = w.wake
	loop, err := evloop.New(p.cfg.Tick, w.onEvent, nil)
	if err != nil {
		return nil, err
	}
	w.loop = loop
	w.slots = make([]slot, p.cfg.MaxInflight)
	w.free = make([]*slot, 0, p.cfg.MaxInflight)
	for i := len(w.slots) - 1; i >= 0; i-- {
		s := &w.slots[i]
		s.w, s.fd = w, -1
		s.timer.Init(s.onTimeout)
		w.free = append(w.free, s)
	}
	w.fds = make([]*slot, 1024)
	return w, nil
}

// run is the worker goroutine: the loop, then the final drain. Everything
// the worker owns is touched only here.
func (w *worker) run() error {
	err := w.loop.Run()
	w.drain()
	return err
}

// --- FIFO, under mu ---

func (w *worker) pushLocked(r *Request) {
	r.prev, r.next, r.inQueue = w.tail, nil, true
	if w.tail != nil {
		w.tail.next = r
	} else {
		w.head = r
	}
	w.tail = r
}

func (w *worker) unlinkLocked(r *Request) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		w.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		w.tail = r.prev
	}
	r.prev, r.next, r.inQueue = nil, nil, false
}

// --- loop goroutine ---

// wake is the task Submit and Cancel post: complete requests canceled while
// queued, abort in-flight ones that were canceled, start queued ones.
func (w *worker) wake(any) error {
	w.mu.Lock()
	w.posted = false
	c := w.cancels
	w.cancels = nil
	ic := w.inflightCancels
	w.inflightCancels = nil
	w.mu.Unlock()
	for c != nil {
		next := c.next
		c.next = nil
		w.complete(c, -1, ErrCanceled)
		c = next
	}
	// In-flight cancels: each request names the slot it was started in,
	// so this costs one check per cancel, not a scan of every slot (up to
	// MaxInflight per wake under an abandon storm). The checks make a stale
	// entry harmless: a request that finished meanwhile has no slot, and one
	// that was reused since is in another slot, or not canceled.
	for _, r := range ic {
		s := r.slot.Load()
		if s == nil || s.w != w || s.r != r || r.state.Load()&canceledBit == 0 {
			continue
		}
		if fd := s.fd; fd >= 0 {
			w.unregister(s)
			w.closeLater(fd)
		}
		w.finish(s, -1, ErrCanceled)
	}
	w.pull()
	return nil
}

// pull moves queued requests into free slots and starts them. It runs after
// every step that frees a slot, which is what lets Submit skip the wake-up
// while the worker is full.
func (w *worker) pull() {
	w.freed = false
	for {
		w.mu.Lock()
		n := len(w.free)
		var batch, last *Request
		k := 0
		for ; k < n && w.head != nil; k++ {
			r := w.head
			w.unlinkLocked(r)
			// Cancel may set the canceled bit concurrently (it takes mu
			// only after): keep it; start() honours it.
			for {
				st := r.state.Load()
				if r.state.CompareAndSwap(st, st&^phaseMask|phaseInflight) {
					break
				}
			}
			if last == nil {
				batch = r
			} else {
				last.next = r
			}
			last = r
		}
		w.full = n-k == 0
		w.mu.Unlock()
		if k == 0 {
			return
		}
		w.p.queued.Add(-int64(k))
		for r := batch; r != nil; {
			next := r.next
			r.next = nil
			w.start(r)
			r = next
		}
		// Connects that failed at once freed their slots again: refill
		// them (each round consumes the FIFO, so this ends).
		if !w.freed {
			return
		}
		w.freed = false
	}
}

func (w *worker) start(r *Request) {
	s := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	s.r, s.fd, s.lastErr = r, -1, nil
	r.slot.Store(s)
	s.tries = r.Tries
	if s.tries <= 0 {
		s.tries = len(r.Addrs)
	}
	s.timeout = r.Timeout
	if s.timeout <= 0 {
		s.timeout = w.p.cfg.ConnectTimeout
	}
	if n := w.st.inflight.Add(1); n > w.st.high.Load() {
		w.st.high.Store(n) // only this goroutine writes high
	}
	if r.state.Load()&canceledBit != 0 {
		w.finish(s, -1, ErrCanceled)
		return
	}
	w.attempt(s)
}

// attempt starts the next connect of s, or finishes s when no try is left.
// Immediate failures loop here rather than recursing.
func (w *worker) attempt(s *slot) {
	r := s.r
	for {
		if r.Attempts >= s.tries {
			w.finish(s, -1, s.lastErr)
			return
		}
		ap := r.Addrs[r.Attempts%len(r.Addrs)]
		r.Attempts++
		r.Addr = ap
		w.st.attempts.Add(1)
		fd, inProgress, err := w.sa.dial(ap)
		if err != nil {
			w.failed(s, err)
			continue
		}
		if !inProgress { // connected at once; never registered
			w.finish(s, fd, nil)
			return
		}
		if err := w.loop.Poller().AddWrite(&netpoll.PollAttachment{FD: fd}, false); err != nil {
			closeFD(fd) // never registered: safe to close now
			w.failed(s, err)
			continue
		}
		s.fd = fd
		w.setFD(fd, s)
		w.loop.Wheel().Schedule(&s.timer, s.timeout, w.loop.Refresh())
		return
	}
}

func (w *worker) failed(s *slot, err error) {
	w.st.failures[Classify(err)].Add(1)
	s.lastErr = err
}

func (w *worker) setFD(fd int, s *slot) {
	for fd >= len(w.fds) {
		w.fds = append(w.fds, make([]*slot, len(w.fds))...)
	}
	w.fds[fd] = s
}

// onEvent handles readiness of a connecting socket.
func (w *worker) onEvent(fd int, ev netpoll.IOEvent) {
	if fd >= len(w.fds) || w.fds[fd] == nil {
		// Not ours any more. With Delete-before-close and closes deferred
		// past the batch (closeLater) this cannot happen; ignoring is the
		// safe answer if it ever does.
		return
	}
	s := w.fds[fd]
	writable, hup := connectDone(ev)
	errno := soError(fd)
	if errno == 0 && !writable && !hup {
		return // spurious wake-up: keep waiting
	}
	w.unregister(s)
	switch {
	case errno != 0:
		w.closeLater(fd)
		w.failed(s, os.NewSyscallError("connect", errno))
		w.attempt(s)
	case !writable: // hang-up without an error or writability
		w.closeLater(fd)
		w.failed(s, errHangup)
		w.attempt(s)
	default:
		w.finish(s, fd, nil) // connected
	}
	if w.freed {
		w.pull()
	}
}

// onTimeout is the slot timer: the current attempt took too long.
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
	fd := s.fd
	var err error = ErrTimeout
	if errno := soError(fd); errno != 0 {
		err = os.NewSyscallError("connect", errno)
	}
	w.unregister(s)
	w.closeLater(fd)
	w.failed(s, err)
	w.attempt(s)
	if w.freed {
		w.pull()
	}
}

// unregister takes the current attempt's fd out of the poller, the fd table
// and the wheel. The fd itself stays open; the caller closes it (later) or
// hands it off.
func (w *worker) unregister(s *slot) {
	w.loop.Wheel().Stop(&s.timer)
	if s.fd < 0 {
		return
	}
	_ = w.loop.Poller().Delete(s.fd)
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

// finish ends s: frees the slot and completes its request with fd or err.
// The caller has unregistered s.fd.
func (w *worker) finish(s *slot, fd int, err error) {
	r := s.r
	s.r, s.lastErr = nil, nil
	r.slot.Store(nil)
	w.free = append(w.free, s)
	w.freed = true
	w.st.inflight.Add(-1)
	w.complete(r, fd, err)
}

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
	default:
		w.st.failed.Add(1)
	}
	w.load.Add(-1)
	r.Handler.Connected(r) // ownership passes here
}

// drain runs on the worker goroutine after the loop has stopped (Close, or a
// poller failure): refuse further Submits and complete everything left with
// ErrClosed (ErrCanceled if it was canceled).
func (w *worker) drain() {
	w.mu.Lock()
	w.closed = true
	q, c := w.head, w.cancels
	w.head, w.tail, w.cancels = nil, nil, nil
	for r := q; r != nil; r = r.next {
		r.inQueue = false
	}
	w.mu.Unlock()
	for c != nil {
		next := c.next
		c.next = nil
		w.complete(c, -1, ErrCanceled)
		c = next
	}
	for q != nil {
		next := q.next
		q.prev, q.next = nil, nil
		w.p.queued.Add(-1)
		w.complete(q, -1, ErrClosed)
		q = next
	}
	// The poller is closed: no batch, no event, so closing at once is safe.
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
		w.finish(s, -1, ErrClosed)
	}
	w.loop.FlushCloses()
}
