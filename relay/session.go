//go:build linux

package relay

import (
	"errors"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/internal/evloop"
	"github.com/relayd/relayd/internal/nbsys"
	"github.com/relayd/relayd/logging"
	"github.com/relayd/relayd/timeout"
)

const (
	sideClient uint8 = iota
	sideUpstream
)

type sessState uint8

const (
	stConnecting sessState = iota // waiting for the connector; client bytes are buffered
	stRelaying
	stClosed
	// Edge states (handshake.go), before an upstream exists. They sort
	// after stClosed so that one comparison sends them to the edge code.
	stProxyHeader // reading the PROXY protocol header
	stHandshake   // reading the SOCKS5 / HTTP CONNECT request
	stResolving   // the target name is being resolved off the loop
	stLinger      // a failure reply was sent; draining the client before close
	stPeek        // reading the first bytes to pick a route (edge_peek.go)
)

// endpoint is one socket of a session.
type endpoint struct {
	fd int   // -1 when absent
	ev uint8 // interest registered in the poller
}

// dir is one direction of a session: bytes read from src, written to dst.
// buf holds only what the destination could not take yet; it comes from the
// server's pool and goes back as soon as it is drained, so an idle or
// flowing session holds no buffer of its own.
//
// Invariant (every state, checked by the tests through Stats.BufsHeld):
// buf != nil if and only if pending() > 0, except that a spliced direction
// never holds a buffer: its pending bytes (end - off, off 0) are in its pipe. Reads go into the loop's scratch
// buffer first; hold takes a pooled buffer only for bytes that arrived and
// must wait, and every path that empties one calls release.
type dir struct {
	buf      *[]byte
	off, end int32 // pending bytes are (*buf)[off:end]; a buffer is at most 1 GiB (configs validates)
	eof      bool  // src sent FIN
	shut     bool  // dst got shutdown(SHUT_WR): this direction is over
	paused   bool  // src is not read because dst refused bytes (counted once in pauses, once in resumes)
	drop     bool  // dst broke (a write failed): src is read and discarded until its EOF
	spliced  bool  // bulk: bytes go through the loop's pipe number pipe with splice(2) (splice_linux.go)
	fulls    uint8 // full scratch reads in a row, toward splicing; 0xff: never
	pipe     int16
	n        uint64 // bytes written to dst
}

// pending counts the bytes read from src and not yet written to dst: in buf
// or, for a spliced direction, in its pipe.
func (d *dir) pending() int { return int(d.end - d.off) }

// hold gives d a pooled buffer to keep pending bytes in (it keeps the one it
// has, emptied: with the invariant it has none when nothing is pending).
func (s *session) hold(d *dir) {
	if d.buf == nil {
		d.buf = s.loop.srv.getBuf()
		s.loop.st.bufsHeld.Add(1)
	}
	d.off, d.end = 0, 0
}

// release returns d's buffer to the pool, dropping whatever it held.
func (s *session) release(d *dir) {
	if d.buf != nil {
		s.loop.srv.putBuf(d.buf)
		s.loop.st.bufsHeld.Add(-1)
	}
	d.buf, d.off, d.end = nil, 0, 0
}

// pause and resume count a backpressure episode of d: its source stops being
// read because the destination refused bytes, until they have drained. They
// pair up: pauses − resumes is the number of directions paused right now
// plus those that ended (closed) while paused.
func (s *session) pause(d *dir) {
	if !d.paused {
		d.paused = true
		s.loop.st.pauses.Add(1)
	}
}

func (s *session) resume(d *dir) {
	if d.paused {
		d.paused = false
		s.loop.st.resumes.Add(1)
	}
}

// session is one relayed connection pair. It belongs to its loop; every
// method runs on the loop goroutine, except Connected (connector worker).
type session struct {
	loop    *loop
	ln      *listener
	gen     uint64
	state   sessState
	limited bool // holds a slot in the listener's SourceLimiter (beside state: in its padding)
	c, u    endpoint
	up      dir // client -> upstream
	down    dir // upstream -> client

	timer      timeout.Timer // idle / fin / drain deadline
	began      time.Time
	lastActive time.Time // loop clock: one tick of precision is plenty
	halfAt     time.Time // first direction finished; zero until then
	client     netip.AddrPort
	upIdx      int        // index of the connected upstream in ups, -1 if none
	ups        *upstreams // the upstream set upIdx counts in (least-conn)
	connectDur time.Duration
	attempts   int32
	reports    uint32         // interim access records written (access.go); in attempts' padding
	upstream   netip.AddrPort // the connected upstream, for the access log

	prev, next *session // loop's session list
	// req is the connect request while one is out: from the loop's free
	// list at Submit, back to it in connected() (the connector calls
	// Connected exactly once and never touches it after). Not embedded: a
	// long-lived session has no use for its ~200 bytes.
	req    *connector.Request
	hs     *handshake      // edge state; nil in plain forward mode
	lc     *ListenerConfig // edge settings, taken at start (a reload may swap the listener's); nil in plain forward mode
	peeked *peekInfo       // a routed session's route and SNI, for its access line; nil otherwise
}

// start registers a freshly accepted session on its loop and asks the
// connector for an upstream. The loop owns s.c.fd from here on.
func (s *session) start(now time.Time) {
	l := s.loop
	l.gen++
	s.gen = l.gen
	s.began, s.lastActive = now, now
	s.upIdx = -1
	s.u.fd = -1
	s.timer.Init(s.onTimer)
	l.sessions.push(s)
	l.st.active.Add(1)
	*l.ref(s.c.fd) = fdRef{s: s, side: sideClient}
	if lc := s.ln.config(); lc.edge != nil && lc.edge.active {
		// The edge settings this session lives by, whatever a reload does.
		s.lc = lc
		s.startEdge(now)
		return
	}
	s.dialForward(now)
}

// dialForward asks the connector for one of the listener's upstreams.
func (s *session) dialForward(now time.Time) { s.dial(now, s.ln.ups.Load()) }

// dial asks the connector for one of the group ups (the listener's
// upstreams, or a route's).
func (s *session) dial(now time.Time, ups *upstreams) {
	l := s.loop
	s.ups = ups
	i := ups.pick()
	s.req = l.newRequest(s, ups.rot[i], ups.urot[i], ups.tries)
	s.state = stConnecting
	if err := l.srv.cfg.Dialer.Submit(s.req); err != nil {
		l.freeRequest(s.req)
		s.req = nil
		s.close(submitReason(err), true)
		return
	}
	s.update()
	l.ev.Wheel().Schedule(&s.timer, time.Duration(l.srv.idle.Load()), now)
}

// Connected is called by a connector worker when the connect finished; it
// hands the result to the session's loop. The connector never touches r
// again, and the loop owns r.FD from the task on.
func (s *session) Connected(r *connector.Request) {
	s.loop.st.queued.Add(1)
	if err := s.loop.ev.PostFunc(s.loop.connectedF, s); err != nil {
		s.loop.st.queued.Add(-1)
		if r.FD >= 0 {
			_ = unix.Close(r.FD) // the loop is gone: nobody else will
			r.FD = -1
		}
	}
}

func (s *session) connected() {
	r := s.req
	s.req = nil
	defer s.loop.freeRequest(r)
	if s.state != stConnecting || r.Cookie != s.gen {
		// The client went away meanwhile; the session is already counted.
		if r.FD >= 0 {
			_ = unix.Close(r.FD)
		}
		return
	}
	s.attempts = int32(r.Attempts)
	s.connectDur = r.Latency
	if r.Err != nil {
		reason := connectReason(r.Err)
		if s.hs != nil && s.lc.Mode != "" && s.lc.Mode != ModeForward {
			s.failReply(r.Err, reason) // the client learns why, then the session ends
			return
		}
		s.close(reason, true)
		return
	}
	l := s.loop
	s.u.fd = r.FD
	s.upstream = r.Addr
	*l.ref(s.u.fd) = fdRef{s: s, side: sideUpstream}
	if s.ups == nil { // not dialled from a group (a SOCKS5 / CONNECT target): the listener's set
		s.ups = s.ln.ups.Load()
	}
	if s.upIdx = s.ups.index(r.Addr); s.upIdx >= 0 { // s.ups: the group dial asked of
		s.ups.active[s.upIdx].Add(1)
	}
	s.state = stRelaying
	s.lastActive = l.ev.Now()
	if s.hs != nil && !s.edgeConnected(r) {
		return
	}
	if l.srv.accessStart.Load() {
		s.logAccess(logging.AccessStart, 0)
	}
	if s.reports = 0; l.srv.accessEvery.Load() > 0 {
		s.rearm(l.ev.Now()) // the first interim record may come before the idle deadline
	}
	s.hs = nil // the handshake is over: a long-lived session does not keep its ~300 bytes
	s.enterRelaying()
}

// enterRelaying is the hand-over from the connect (and any handshake) into
// relaying: the bytes the client sent before the upstream existed go first,
// and from here on the dir invariant (a buffer only while bytes are pending)
// is what read, flush and update rely on.
func (s *session) enterRelaying() {
	for _, d := range []*dir{&s.up, &s.down} {
		if d.pending() == 0 {
			s.release(d)
		}
	}
	if s.up.pending() > 0 {
		if !s.flush(&s.up, s.u.fd) {
			return
		}
		if s.up.pending() > 0 {
			s.pause(&s.up) // the upstream refused early bytes: the client waits
		}
	}
	if s.up.eof && s.up.pending() == 0 && !s.up.shut && !s.shutWrite(&s.up, s.u.fd) {
		return
	}
	s.update()
}

func (s *session) onEvent(side uint8, ev evloop.IOEvent) {
	s.lastActive = s.loop.ev.Now()
	if s.state > stClosed {
		s.onEdgeEvent(ev)
		return
	}
	var ep *endpoint
	var src, dst *dir // src: the direction this side feeds; dst: the one it drains
	if side == sideClient {
		ep, src, dst = &s.c, &s.up, &s.down
	} else {
		ep, src, dst = &s.u, &s.down, &s.up
	}
	errEv := ev&evloop.ErrEvents != 0
	if ep.ev&evWrite != 0 && (ev&evloop.WriteEvents != 0 || errEv) {
		if !s.flush(dst, ep.fd) {
			return
		}
	}
	if ep.ev&evRead != 0 && (ev&evloop.ReadEvents != 0 || errEv) {
		if !s.read(side, src) {
			return
		}
	}
	if s.state != stClosed {
		s.update()
	}
}

// read takes what side has for its peer. It reports false if the session was
// closed.
func (s *session) read(side uint8, d *dir) bool {
	l := s.loop
	srcFD := s.c.fd
	if side == sideUpstream {
		srcFD = s.u.fd
	}
	if s.state == stConnecting {
		return s.readEarly(d, srcFD)
	}
	dstFD := s.u.fd
	if side == sideUpstream {
		dstFD = s.c.fd
	}
	if d.drop {
		return s.discard(d, srcFD)
	}
	if spliceAfter == 0 && !d.spliced && d.fulls != 0xff {
		s.maybeSplice(d)
	}
	if d.spliced {
		return s.readSplice(d, side, srcFD, dstFD)
	}
	// Relaying: read into the loop's scratch buffer and write straight on;
	// only what the destination refuses is copied into a pooled buffer.
	// A few rounds per event while the source keeps filling the buffer and
	// the destination keeps up.
	for range 4 {
		n, err := nbsys.Read(srcFD, l.scratch)
		if n <= 0 {
			return s.afterRead(d, n, err, side)
		}
		w, werr := nbsys.Write(dstFD, l.scratch[:n])
		if werr != nil {
			if !errors.Is(werr, unix.EAGAIN) && !errors.Is(werr, unix.EINTR) {
				return s.broken(d)
			}
			w = 0
		}
		s.count(d, side, w)
		if w < n {
			// Only reached with nothing pending (update reads a side
			// only then), so by the dir invariant d holds no buffer yet.
			s.hold(d)
			d.end = int32(copy(*d.buf, l.scratch[w:n]))
			s.pause(d)
			return true
		}
		if n < len(l.scratch) {
			if d.fulls != 0xff {
				d.fulls = 0 // a short read: the run of full ones starts again
			}
			return true
		}
		s.maybeSplice(d)
		if d.spliced {
			return s.readSplice(d, side, srcFD, dstFD)
		}
	}
	return true
}

// readEarly keeps what the client sends before its upstream exists, up to
// one buffer; update stops reading when it is full. The read goes into the
// loop's scratch buffer and a pooled buffer is taken only for bytes that
// arrived, so a probe that sends nothing, or only a FIN, holds none.
func (s *session) readEarly(d *dir, fd int) bool {
	l := s.loop
	room := len(l.scratch)
	if d.buf != nil {
		room = len(*d.buf) - int(d.end)
	}
	if room == 0 {
		return true // full: a zero-length read would look like EOF
	}
	n, err := nbsys.Read(fd, l.scratch[:room])
	if n > 0 {
		if d.buf == nil {
			s.hold(d)
		}
		d.end += int32(copy((*d.buf)[d.end:], l.scratch[:n]))
		return true
	}
	return s.afterRead(d, n, err, sideClient)
}

// submitReason is the close reason for a request the connector refused.
func submitReason(err error) Reason {
	if errors.Is(err, connector.ErrClosed) {
		return ReasonShutdown
	}
	if errors.Is(err, connector.ErrQueueFull) {
		return ReasonRejectedQueueFull
	}
	if errors.Is(err, connector.ErrUpstreamsDown) {
		return ReasonUpstreamsDown
	}
	return ReasonConnectFailed
}

// connectReason is the close reason for a connect that failed.
func connectReason(err error) Reason {
	if errors.Is(err, connector.ErrClosed) || errors.Is(err, connector.ErrCanceled) {
		return ReasonShutdown
	}
	if errors.Is(err, connector.ErrUpstreamsDown) {
		return ReasonUpstreamsDown
	}
	switch connector.Classify(err) {
	case connector.ClassTimeout:
		return ReasonConnectTimeout
	case connector.ClassRefused:
		return ReasonRefused
	}
	return ReasonConnectFailed
}

func (s *session) afterRead(d *dir, n int, err error, side uint8) bool {
	switch {
	case n > 0:
		d.end += int32(n)
		return true
	case err == nil: // EOF: forward it once what is buffered has gone
		d.eof = true
		if d.pending() == 0 && s.state == stRelaying {
			dstFD := s.u.fd
			if side == sideUpstream {
				dstFD = s.c.fd
			}
			return s.shutWrite(d, dstFD)
		}
		return true
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return true
	}
	s.fail(err)
	return false
}

func (s *session) count(d *dir, side uint8, n int) {
	if n <= 0 {
		return
	}
	d.n += uint64(n)
	if side == sideClient {
		s.loop.st.bytesUp.Add(uint64(n))
	} else {
		s.loop.st.bytesDown.Add(uint64(n))
	}
}

// flush writes d's pending bytes to fd. It reports false if the session was
// closed.
func (s *session) flush(d *dir, fd int) bool {
	if d.spliced {
		side := sideClient // d's source
		if d == &s.down {
			side = sideUpstream
		}
		if !s.drainPipe(d, side, fd) {
			return false
		}
		if d.pending() > 0 {
			return true
		}
		s.resume(d)
	} else if d.pending() > 0 {
		w, err := nbsys.Write(fd, (*d.buf)[d.off:d.end])
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				return true
			}
			return s.broken(d)
		}
		side := sideClient // d's source
		if d == &s.down {
			side = sideUpstream
		}
		s.count(d, side, w)
		if d.off += int32(w); d.off < d.end {
			return true
		}
		s.release(d)
		s.resume(d)
	}
	if d.eof && !d.shut {
		return s.shutWrite(d, fd)
	}
	return true
}

// shutWrite forwards a FIN: the direction is over. When both are, the
// session ends; when one is, the fin timeout starts.
func (s *session) shutWrite(d *dir, fd int) bool {
	d.shut = true
	s.unsplice(d) // the pipe is empty: nothing is pending
	if o := s.other(d); o.shut && !o.drop {
		// This FIN ends the session, and the close that checkDone makes
		// now sends it: both sources reached EOF, so neither socket has
		// unread bytes that would turn the close into a RST (review P3:
		// one shutdown fewer per session).
		return s.checkDone()
	}
	if err := nbsys.Shutdown(fd, unix.SHUT_WR); err != nil && !errors.Is(err, unix.ENOTCONN) {
		return s.broken(d)
	}
	return s.checkDone()
}

// other is the direction opposite d.
func (s *session) other(d *dir) *dir {
	if d == &s.up {
		return &s.down
	}
	return &s.up
}

// broken ends direction d after a write toward its destination failed
// (EPIPE, ECONNRESET…: that peer stopped reading). It is not the other
// peer's fault and says nothing about the reverse direction: the broken peer
// may have sent a complete response and FIN before it went away. So only d
// ends: its pending bytes are dropped and its source is read and discarded
// until EOF, while the reverse direction runs on and delivers what arrived
// cleanly. It reports false if the session was closed.
func (s *session) broken(d *dir) bool {
	s.unsplice(d) // before release, which forgets the pending count
	s.release(d)
	d.drop, d.shut = true, true
	return s.checkDone()
}

// discard reads and drops what d's source sends after d's destination broke,
// so that the final close never meets unread input: that would turn our FIN
// into a RST and cost the other peer the tail of the reverse direction.
func (s *session) discard(d *dir, fd int) bool {
	l := s.loop
	for range 4 {
		n, err := nbsys.Read(fd, l.scratch)
		switch {
		case n > 0:
			if n < len(l.scratch) {
				return true
			}
		case err == nil:
			d.eof = true
			return s.checkDone()
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return true
		default:
			s.fail(err)
			return false
		}
	}
	return true
}

// checkDone ends the session once both directions are over: shut, and a
// dropped one also drained to its source's EOF. While only one is over, the
// fin timeout runs. It reports false if the session was closed.
func (s *session) checkDone() bool {
	if s.up.shut && s.down.shut && (!s.up.drop || s.up.eof) && (!s.down.drop || s.down.eof) {
		reason := ReasonEOF
		if s.up.drop || s.down.drop {
			reason = ReasonReset // a peer broke off; the other one got a clean FIN
		}
		s.close(reason, false)
		return false
	}
	if s.halfAt.IsZero() {
		s.halfAt = s.loop.ev.Now()
		s.rearm(s.halfAt)
	}
	return true
}

// fail ends the session after a read error on either side (the peer reset):
// the other peer is reset too, so it learns the truth rather than a clean
// EOF. Linger 0 discards what is still in that peer's send queue; it was
// owed to a connection that no longer exists end to end.
func (s *session) fail(err error) {
	reason := ReasonError
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) {
		reason = ReasonReset
	}
	s.close(reason, true)
}

// update registers exactly the interest the session's state calls for:
// read a side only while its direction has nothing pending (so a slow peer
// stops the fast one: TCP flow control does the rest), write a side only
// while bytes wait for it.
func (s *session) update() {
	if s.state > stClosed {
		s.updateEdge()
		return
	}
	l := s.loop
	var want uint8
	if !s.up.eof {
		if s.state == stConnecting {
			if s.up.buf == nil || int(s.up.end) < len(*s.up.buf) {
				want |= evRead
			}
		} else if s.up.pending() == 0 {
			want |= evRead
		}
	}
	if s.down.pending() > 0 {
		want |= evWrite
	}
	if err := l.setInterest(s.c.fd, &s.c.ev, want); err != nil {
		s.fail(err)
		return
	}
	if s.u.fd < 0 {
		return
	}
	want = 0
	if !s.down.eof && s.down.pending() == 0 {
		want |= evRead
	}
	if s.up.pending() > 0 {
		want |= evWrite
	}
	if err := l.setInterest(s.u.fd, &s.u.ev, want); err != nil {
		s.fail(err)
	}
}

// onTimer enforces the idle and fin timeouts. Both are inactivity limits:
// the fin timeout replaces the idle timeout once one direction is finished
// (as HAProxy's client-fin/server-fin do), so a long reply after a
// half-close still flows while a half-closed session that went quiet cannot
// pin its fds. Activity does not touch the wheel: it only moves lastActive,
// and the timer re-arms itself for what remains when it fires early.
func (s *session) onTimer(now time.Time) {
	if s.state == stClosed {
		return
	}
	if s.state > stClosed {
		s.onEdgeTimer(now)
		return
	}
	if s.state == stConnecting { // the connector enforces connect_timeout
		s.rearm(now)
		return
	}
	idle, fin := s.loop.srv.timeouts()
	limit, reason := idle, ReasonIdleTimeout
	if !s.halfAt.IsZero() && fin < limit {
		limit, reason = fin, ReasonFinTimeout
	}
	if !now.Before(s.since().Add(limit)) {
		s.close(reason, false)
		return
	}
	s.report(now)
	s.rearm(now)
}

// since is when the current inactivity limit started counting: the last
// byte either way, or, once a direction was dropped (its peer broke), the
// moment the session went half-closed: draining a peer that keeps sending
// into a dead direction must not keep the session alive for ever.
func (s *session) since() time.Time {
	if s.up.drop || s.down.drop {
		return s.halfAt
	}
	return s.lastActive
}

func (s *session) rearm(now time.Time) {
	idle, fin := s.loop.srv.timeouts()
	limit := idle
	if !s.halfAt.IsZero() {
		limit = min(limit, fin)
	}
	next := s.since().Add(limit)
	if s.state == stConnecting || next.Before(now) {
		next = now.Add(limit)
	}
	if r := s.nextReport(); !r.IsZero() && r.Before(next) {
		next = r // the interim access record (access.go) comes first
	}
	s.loop.ev.Wheel().ScheduleAt(&s.timer, next)
}

// close ends the session: both fds leave the poller now and are closed after
// this event round; with rst the client and upstream get a RST, not a FIN.
func (s *session) close(reason Reason, rst bool) {
	if s.state == stClosed {
		return
	}
	l := s.loop
	if s.req != nil { // a connect is out (any state: it may have been refused at admission, before one was)
		s.req.Cancel() // the connector still calls Connected; connected() closes any fd and frees req
	}
	s.state = stClosed
	l.ev.Wheel().Stop(&s.timer)
	for _, ep := range []*endpoint{&s.c, &s.u} {
		if ep.fd < 0 {
			continue
		}
		// No epoll Delete: the close that follows this event round removes
		// the registration, and until then l.fds no longer leads to s, so a
		// late event for the fd is dropped (two epoll_ctl saved per session).
		// Precondition: the close drops the last reference to the open file.
		// While a fork for an upgrade is between clone and exec, the child
		// holds a second one, the registration outlives the number, and a
		// new socket given the same number can see events meant for the old
		// one. Every handler tolerates that by design — a read or write that
		// returns EAGAIN, an empty flush — so keep them tolerant (review C14).
		ep.ev = 0
		l.fds[ep.fd] = fdRef{}
		if rst {
			setLingerZero(ep.fd)
		}
		l.deferClose(ep.fd)
	}
	s.unsplice(&s.up) // before release, which forgets the pending count
	s.unsplice(&s.down)
	s.release(&s.up)
	s.release(&s.down)
	if s.upIdx >= 0 {
		s.ups.active[s.upIdx].Add(-1) // the set it was counted in, even if a reload swapped it
	}
	if s.limited {
		s.lc.Limiter.Release(s.client.Addr(), l.ev.Now())
	}
	l.sessions.remove(s)
	l.st.active.Add(-1)
	l.st.closed[reason].Add(1)
	s.ln.st.closed[reason].Add(1)
	s.ln.st.bytesUp.Add(s.up.n)
	s.ln.st.bytesDown.Add(s.down.n)
	s.ln.release()
	l.srv.release(s.ln)
	s.logAccess(logging.AccessEnd, reason)
	s.c.fd, s.u.fd = -1, -1
}

// sessionList is an intrusive doubly linked list with a sentinel.
type sessionList struct{ head session }

func (sl *sessionList) init() { sl.head.prev, sl.head.next = &sl.head, &sl.head }

func (sl *sessionList) push(s *session) {
	s.prev, s.next = sl.head.prev, &sl.head
	sl.head.prev.next = s
	sl.head.prev = s
}

func (sl *sessionList) remove(s *session) {
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = nil, nil
}

func (sl *sessionList) first() *session {
	if sl.head.next == &sl.head {
		return nil
	}
	return sl.head.next
}

// next is the session after s in the list, nil at the end.
func (sl *sessionList) next(s *session) *session {
	if s.next == &sl.head {
		return nil
	}
	return s.next
}
