//go:build linux

package relay

import (
	"errors"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/internal/evloop"
	"github.com/relayd/relayd/timeout"
)

// Interest bits registered for an fd in the loop's poller.
const (
	evRead  uint8 = 1
	evWrite uint8 = 2
)

// fdRef maps an fd number to what owns it in this loop. A zero fdRef means
// "not ours (any more)": events for it are dropped.
type fdRef struct {
	s    *session
	ls   *lsock
	side uint8 // sideClient or sideUpstream
}

// lsock is one listening socket, owned by one loop.
type lsock struct {
	fd      int
	ln      *listener
	loop    *loop
	closed  bool
	paused  bool          // out of the poller until timer fires
	backoff time.Duration // current back-off delay; 0 = no episode under way
	errs    uint64        // accept errors during this back-off episode
	singles uint8         // wake-ups in a row that found one client (accept: probe for more only now and then)
	timer   timeout.Timer // ends a back-off episode
}

// loop is one relay event loop. It owns its listeners, its sessions and all
// their fds outright: nothing else reads, writes or closes them.
type loop struct {
	id  int
	srv *Server
	ev  *evloop.Loop
	log *zap.Logger

	fds      []fdRef
	sessions sessionList
	lsocks   []*lsock
	scratch  []byte   // one read buffer per loop: idle sessions hold none
	pipes    pipePool // splice(2) pipes lent to bulk directions
	gen      uint64
	st       counters

	connectedF func(any) error
	adoptF     func(any) error
	reqs       []*connector.Request // free connect requests (newRequest, freeRequest)
	srcNext    uint64               // round-robin over the listener's Sources
	out        [128]byte            // handshake replies and PROXY headers are built here and written at once
}

// newRequest takes a connect request for s from the loop's free list
// (sessions need one only while connecting). Loop goroutine only.
func (l *loop) newRequest(s *session, addrs []netip.AddrPort, ups []*connector.Upstream, tries int) *connector.Request {
	var r *connector.Request
	if n := len(l.reqs); n > 0 {
		r = l.reqs[n-1]
		l.reqs = l.reqs[:n-1]
	} else {
		r = new(connector.Request)
	}
	r.Addrs, r.Upstreams, r.Tries, r.Handler, r.Cookie = addrs, ups, tries, s, s.gen
	r.Timeout = time.Duration(l.srv.connectTimeout.Load())
	if src := s.ln.config().Sources; len(src) > 0 {
		l.srcNext++
		r.Source = src[l.srcNext%uint64(len(src))]
	}
	return r
}

// freeRequest returns r once the connector has called Connected for it and
// the result has been taken. Loop goroutine only.
func (l *loop) freeRequest(r *connector.Request) {
	r.Reset()
	l.reqs = append(l.reqs, r)
}

func newLoop(id int, srv *Server) (*loop, error) {
	l := &loop{id: id, srv: srv, log: srv.cfg.Zap.With(zap.Int("loop", id)), scratch: make([]byte, srv.cfg.BufferSize)}
	ev, err := evloop.NewWithClock(srv.cfg.Tick, l.onEvent, srv.cfg.Clock)
	if err != nil {
		return nil, err
	}
	l.ev = ev
	l.pipes = pipePool{size: srv.cfg.SplicePipeSize}
	if srv.cfg.Splice != SpliceOff {
		l.pipes.max = srv.cfg.SplicePipes
	}
	l.connectedF = l.connectedTask
	l.adoptF = l.adoptTask
	l.sessions.init()
	return l, nil
}

func (l *loop) ref(fd int) *fdRef {
	if fd >= len(l.fds) {
		n := max(2*len(l.fds), fd+1, 64)
		fds := make([]fdRef, n)
		copy(fds, l.fds)
		l.fds = fds
	}
	return &l.fds[fd]
}

func (l *loop) onEvent(fd int, ev evloop.IOEvent) {
	if fd >= len(l.fds) {
		return
	}
	r := l.fds[fd]
	switch {
	case r.s != nil:
		r.s.onEvent(r.side, ev)
	case r.ls != nil:
		l.accept(r.ls, false)
	}
}

// deferClose closes fd after this event round (evloop.CloseAfterRound):
// the fd has left the poller and l.fds, and its number cannot be reused
// before the close, so no stale event can hit a new socket.
func (l *loop) deferClose(fd int) { l.ev.CloseAfterRound(fd) }

// setInterest moves fd's registration from *cur to want in one epoll_ctl
// (a registration with no events stays in the set, so pausing the only
// direction is a Mod too).
func (l *loop) setInterest(fd int, cur *uint8, want uint8) error {
	have := *cur
	if have == want {
		return nil
	}
	var events evloop.IOEvent
	if want&evRead != 0 {
		events |= evloop.ReadEvents
	}
	if want&evWrite != 0 {
		events |= evloop.WriteEvents
	}
	var err error
	switch {
	case want == 0:
		err = l.ev.Delete(fd)
	case have == 0:
		err = l.ev.Add(fd, events)
	default:
		err = l.ev.Mod(fd, events)
	}
	if err != nil {
		return err
	}
	*cur = want
	return nil
}

// ---- accepting ----

const (
	acceptBatch    = 64
	maxDrainRounds = 1024 // × acceptBatch: above any backlog relayd sets (accept.backlog ≤ 65535)
)

func (l *loop) addListener(ls *lsock) error {
	ls.loop = l
	ls.timer.Init(func(time.Time) { l.endBackoff(ls) })
	*l.ref(ls.fd) = fdRef{ls: ls}
	l.lsocks = append(l.lsocks, ls)
	return l.ev.Add(ls.fd, evloop.ReadEvents)
}

// accept takes up to acceptBatch connections from ls (all: one at a time
// while clients come one per wake-up, see below) and returns how many.
func (l *loop) accept(ls *lsock, all bool) int {
	if ls.closed || ls.paused {
		return 0
	}
	// At a low rate every wake-up finds one client, and trying a second
	// accept only returns EAGAIN: one system call wasted per session. So
	// after a wake-up that found one, the next takes one (the listener is
	// level-triggered: if more wait, the next poll round reports it
	// again), except every 8th, which takes a batch and finds out whether
	// the rate has risen (nginx's multi_accept off, with a probe).
	batch := acceptBatch
	if !all && ls.singles > 0 && ls.singles%8 != 0 {
		batch = 1
	}
	n := 0
	defer func() {
		if n == 1 {
			ls.singles++
		} else if n > 1 {
			ls.singles = 0
		}
	}()
	for range batch {
		nfd, client, err := accept4(ls.fd)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN):
				return n
			case retryAccept(err):
				continue
			}
			l.startBackoff(ls, err)
			return n
		}
		n++
		l.st.accepted.Add(1)
		l.srv.admit(l, ls.ln, nfd, client)
	}
	return n
}

// retryAccept reports the accept errors to retry at once. Besides EINTR and
// ECONNABORTED (the client gave up while queued), Linux passes pending
// network errors of the new connection up through accept, and accept(2)
// says to treat them like EAGAIN by retrying: they say nothing about the
// listener, so they must not pause it (review C11).
func retryAccept(err error) bool {
	switch {
	case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED),
		errors.Is(err, unix.EPROTO), errors.Is(err, unix.ENOPROTOOPT), errors.Is(err, unix.ENETDOWN),
		errors.Is(err, unix.EHOSTDOWN), errors.Is(err, unix.ENONET), errors.Is(err, unix.EHOSTUNREACH),
		errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENETUNREACH):
		return true
	}
	return false
}

// startBackoff stops polling a listener whose accept failed for lack of
// resources (EMFILE, ENFILE, ENOBUFS…): with a level-triggered poller the
// pending connection would otherwise wake the loop forever (libuv#690). The
// listener is polled again after 5 ms, doubling to 1 s, as net/http does. One
// warning per episode, one info line when it ends.
func (l *loop) startBackoff(ls *lsock, err error) {
	k := acceptOther
	switch {
	case errors.Is(err, unix.EMFILE):
		k = acceptEMFILE
	case errors.Is(err, unix.ENFILE):
		k = acceptENFILE
	case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
		k = acceptENOBUFS
	}
	l.st.acceptErrs[k].Add(1)
	ls.errs++
	if ls.backoff == 0 {
		ls.backoff = 5 * time.Millisecond
		l.st.acceptPaused.Add(1)
		l.log.Warn("accept failing, backing off", zap.String("listener", ls.ln.cfg.Name), zap.Error(err))
	} else {
		ls.backoff = min(2*ls.backoff, time.Second)
	}
	ls.paused = true
	_ = l.ev.Delete(ls.fd)
	l.ev.Wheel().Schedule(&ls.timer, ls.backoff, l.ev.Refresh())
}

func (l *loop) endBackoff(ls *lsock) {
	if ls.closed {
		return
	}
	if err := l.ev.Add(ls.fd, evloop.ReadEvents); err != nil {
		l.ev.Wheel().Schedule(&ls.timer, ls.backoff, l.ev.Now())
		return
	}
	ls.paused = false
	l.accept(ls, true)
	if !ls.paused { // accept drained the queue or hit EAGAIN: the episode is over
		l.log.Info("accept recovered", zap.String("listener", ls.ln.cfg.Name), zap.Uint64("errors", ls.errs))
		ls.backoff, ls.errs = 0, 0
	}
}

func (l *loop) closeListeners() {
	stop := !l.srv.handoff.Load()
	for _, ls := range l.lsocks {
		l.closeLsock(ls, stop)
	}
}

func (l *loop) closeListenerOf(ln *listener, stop bool) {
	for _, ls := range l.lsocks {
		if ls.ln == ln {
			l.closeLsock(ls, stop)
		}
	}
}

// closeLsock stops this loop accepting on ls. With stop, the socket stops
// listening for every holder of a copy (shutdown on a listening socket),
// so new connects are refused at once rather than left in a backlog that a
// held-open duplicate (the upgrade machinery keeps one) would never drain.
//
// Before a stop, what already waits in the accept queue is accepted (and
// drains as a session): on Linux, shutdown on a listening socket resets
// every completed connection still queued, clients that had finished their
// handshake. Bounded by the backlog: acceptBatch per round, at most
// maxDrainRounds rounds.
func (l *loop) closeLsock(ls *lsock, stop bool) {
	if ls.closed {
		return
	}
	if stop {
		for range maxDrainRounds {
			if l.accept(ls, true) == 0 || ls.paused {
				break
			}
		}
	}
	ls.closed = true
	if stop {
		_ = unix.Shutdown(ls.fd, unix.SHUT_RD)
	}
	l.ev.Wheel().Stop(&ls.timer)
	if !ls.paused {
		_ = l.ev.Delete(ls.fd)
	}
	l.fds[ls.fd] = fdRef{}
	l.deferClose(ls.fd)
}

// ---- tasks posted from other goroutines ----

// connectedTask runs on the loop with a session whose connect finished.
func (l *loop) connectedTask(arg any) error {
	l.st.queued.Add(-1)
	arg.(*session).connected()
	return nil
}

// adoptTask takes over a session accepted by another loop (single-acceptor
// mode). From here on this loop owns the client fd.
func (l *loop) adoptTask(arg any) error {
	l.st.queued.Add(-1)
	s := arg.(*session)
	s.loop = l
	s.start(l.ev.Refresh())
	return nil
}

func (l *loop) closeAll(reason Reason) {
	for s := l.sessions.first(); s != nil; s = l.sessions.first() {
		s.close(reason, true)
	}
}
