//go:build linux

package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/edge/httpconnect"
	"github.com/relayd/relayd/edge/proxyproto"
	"github.com/relayd/relayd/edge/socks5"
	"github.com/relayd/relayd/internal/evloop"
	"github.com/relayd/relayd/internal/nbsys"
)

// The edge of a session: everything between accept and the connect request
// that is not plain forwarding. A session of a listener with edge settings
// goes through, in order:
//
//	stProxyHeader  (ProxyAccept set and the peer is in Trusted) read and parse
//	               the PROXY header; its source becomes the session's client
//	admission      source ACL, then the per-source limiter, on that client
//	stHandshake    (socks5 / http-connect) parse the request, reply in place
//	stResolving    (a name target) the resolver runs off the loop
//	stConnecting   as in forward mode, with exactly one checked address
//	stLinger       a failure reply was sent: drain the client until EOF or a
//	               short deadline, so the reply is not lost to a RST
//
// Handshake bytes are read through the loop's scratch buffer into hs.in, a
// small slice that holds only what no parser could use yet (edgeRead). When
// the request is complete, whatever the client sent after it is handed over
// to s.up (handOver), where the connecting state keeps early payload, and is
// forwarded. Replies are written straight to the client fd; what the socket
// refuses is queued in s.down and flushed on write interest.
//
// The whole pre-relay phase is bounded by HandshakeTimeout via the session
// timer. A plain forward listener without edge settings never gets here.

const (
	defaultHandshakeTimeout = 10 * time.Second
	lingerTimeout           = time.Second // upper bound for draining after a failure reply
	sweepEvery              = 5 * time.Second
)

// handshake is a session's edge state; nil for sessions that need none.
type handshake struct {
	socks    socks5.Server
	local    netip.AddrPort // where the client connected to (the PROXY header's Dst when one was accepted)
	target   [1]netip.AddrPort
	port     uint16 // target port of a name request
	deadline time.Time
	reason   Reason // stLinger: the reason the session will close with
	in       []byte // unparsed handshake bytes (from off); grows as needed, at most edgeBound
	off      int    // parse position in in
	scanned  int    // bytes after off already seen by a parser that said ErrNeedMore
	// ask is what the client requested and the user it gave, for the
	// access line of a session refused before it was relayed; nil until
	// known. A pointer, so that a stalled handshake does not pay for it
	// (TestStalledHandshakesHeap).
	ask *edgeAsk
}

// edgeAsk is an edge request as the client made it.
type edgeAsk struct {
	target string // "host:port" or "ip:port"
	user   string
}

// resolveResult carries a resolver answer back to the session's loop.
type resolveResult struct {
	s     *session
	gen   uint64
	addrs []netip.Addr
	err   error
}

func resolvedTask(arg any) error {
	r := arg.(*resolveResult)
	r.s.loop.st.queued.Add(-1)
	r.s.resolved(r)
	return nil
}

// onEdgeEvent handles client events before an upstream exists.
func (s *session) onEdgeEvent(ev evloop.IOEvent) {
	errEv := ev&evloop.ErrEvents != 0
	if s.c.ev&evWrite != 0 && (ev&evloop.WriteEvents != 0 || errEv) {
		if !s.flushReply() {
			return
		}
	}
	if s.c.ev&evRead != 0 && (ev&evloop.ReadEvents != 0 || errEv) {
		if s.state == stLinger {
			s.drain()
		} else {
			s.edgeRead()
		}
	}
	if s.state != stClosed {
		s.update()
	}
}

// edgeRead reads client bytes for the current parse phase, or, once the
// request is parsed (stResolving), keeps the early payload as forward mode
// does before its upstream exists.
//
// Memory: the read goes into the loop's scratch buffer and only the bytes
// a parser could not use yet are kept, in hs.in, a slice that grows with
// what the client really sent and never beyond edgeBound. A client that
// sent one byte and stalled costs a few bytes, not a relay buffer.
func (s *session) edgeRead() {
	l := s.loop
	if s.state == stResolving {
		s.readEarly(&s.up, s.c.fd)
		return
	}
	if s.state == stPeek {
		s.peekRead(l.ev.Now())
		return
	}
	hs := s.hs
	if hs.off > 0 { // parse position at the start: room for a longer header
		hs.in = hs.in[:copy(hs.in, hs.in[hs.off:])]
		hs.off = 0
	}
	room := s.edgeBound() - len(hs.in)
	if room <= 0 {
		return // full: advance has refused it already
	}
	n, err := nbsys.Read(s.c.fd, l.scratch[:min(room, len(l.scratch))])
	switch {
	case n > 0:
		hs.in = append(hs.in, l.scratch[:n]...)
		s.advance(l.ev.Now())
	case err == nil: // EOF
		s.close(ReasonHandshakeError, false) // truncated header or request
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
	default:
		s.fail(err)
	}
}

// edgeBound is how many unparsed bytes the current parse phase may hold: the
// protocol's own bound on what it can still be waiting for (one PROXY header,
// one SOCKS5 handshake, one HTTP head), never more than a relay buffer.
func (s *session) edgeBound() int {
	b := socks5.MaxHandshake
	switch {
	case s.state == stPeek:
		b = s.loop.srv.cfg.BufferSize // a first message of routing must fit where it is kept for the upstream
	case s.state == stProxyHeader:
		b = proxyproto.MaxLen
	case s.lc.Mode == ModeHTTPConnect:
		b = s.lc.edge.httpCfg.MaxHead
	}
	return min(b, s.loop.srv.cfg.BufferSize)
}

// handOver moves what the client sent after its request (hs.in past the
// parse position) to s.up, where connected() expects early payload; the
// handshake's own bytes are dropped. A pooled buffer is taken only if there
// is payload.
func (s *session) handOver() {
	hs := s.hs
	if rest := hs.in[hs.off:]; len(rest) > 0 {
		s.hold(&s.up)
		s.up.end = int32(copy(*s.up.buf, rest))
	}
	hs.in, hs.off, hs.scanned = nil, 0, 0
}

// advance parses what hs.in holds for the current phase, moving on as far as
// the bytes allow (a client may pipeline PROXY header, greeting, auth and
// request in one segment).
func (s *session) advance(now time.Time) {
	if s.state == stPeek {
		b := s.hs.in
		// A TLS parse walks record headers until the hello is whole: cheap
		// per byte. An HTTP head can only complete, or show its Host, with
		// a new '\n' (worthParsing).
		if len(b) > 0 && (b[0] == 0x16 || b[0]&0x80 != 0 || worthParsing(stHandshake, ModeHTTPConnect, b, s.hs.scanned)) {
			s.hs.scanned = len(b)
			s.peek(now, b, false, false)
		}
		return
	}
	if s.state != stProxyHeader && s.state != stHandshake {
		return
	}
	cfg, hs := s.lc, s.hs
	b := hs.in[hs.off:]
	full := len(b) >= s.edgeBound()
	if !full && !worthParsing(s.state, cfg.Mode, b, hs.scanned) {
		return
	}
	hs.scanned = len(b)
	if s.state == stProxyHeader {
		h, n, err := proxyproto.Parse(b, cfg.ProxyAccept)
		if errors.Is(err, proxyproto.ErrNeedMore) {
			if full {
				s.close(ReasonHandshakeError, false) // buffer smaller than the header
			}
			return
		}
		if err != nil {
			s.close(ReasonHandshakeError, false) // the protocol has no error reply
			return
		}
		hs.off += n
		hs.scanned = 0
		if h.HasAddrs() {
			s.client = netip.AddrPortFrom(h.Src.Addr().Unmap(), h.Src.Port())
			s.hs.local = netip.AddrPortFrom(h.Dst.Addr().Unmap(), h.Dst.Port())
		}
		s.admitted(now)
		return
	}
	// stHandshake
	var (
		host string
		addr netip.AddrPort
		port uint16
	)
	if cfg.Mode == ModeSOCKS5 {
		n, out, err := hs.socks.Feed(b, s.loop.out[:0])
		hs.off += n
		if n > 0 {
			hs.scanned = 0
		}
		if len(out) > 0 && !s.reply(out) {
			return
		}
		switch {
		case errors.Is(err, socks5.ErrNeedMore):
			// Feed took every complete message; the rest waits for
			// bytes, unless the buffer is already full of it.
			if full && n == 0 {
				s.close(ReasonHandshakeError, false)
			}
			return
		case errors.Is(err, socks5.ErrAuthFailed):
			hs.ask = &edgeAsk{user: hs.socks.User()}
			s.authFailed(now)
			return
		case err != nil:
			s.linger(ReasonHandshakeError)
			return
		}
		r := hs.socks.Request()
		host, addr, port = r.Host, r.Addr, r.Port
		hs.ask = &edgeAsk{user: hs.socks.User()}
	} else {
		r, n, err := httpconnect.Parse(b, cfg.edge.httpCfg)
		switch {
		case errors.Is(err, httpconnect.ErrNeedMore):
			if full {
				err = httpconnect.ErrHeadTooLarge
			} else {
				return
			}
		}
		if err != nil {
			hs.ask = &edgeAsk{target: askedFor(r.Host, r.Addr, r.Port), user: r.User}
			if !s.reply(httpconnect.AppendError(s.loop.out[:0], err)) {
				return
			}
			if errors.Is(err, httpconnect.ErrAuthFailed) || errors.Is(err, httpconnect.ErrAuthRequired) {
				s.authFailed(now)
			} else {
				s.linger(ReasonHandshakeError)
			}
			return
		}
		hs.off += n
		host, addr, port = r.Host, r.Addr, r.Port
		hs.ask = &edgeAsk{user: r.User}
	}
	hs.ask.target = askedFor(host, addr, port)
	s.handOver()
	s.route(host, addr, port)
}

// askedFor is a request's target as the client gave it: "host:port" for a
// name, "ip:port" for an address, "" for none.
func askedFor(host string, addr netip.AddrPort, port uint16) string {
	switch {
	case host != "":
		return net.JoinHostPort(host, strconv.Itoa(int(port)))
	case addr.IsValid():
		return addr.String()
	}
	return ""
}

// worthParsing saves rescans of a client that trickles its header: the
// stateless parsers look at the whole buffer each time, which would cost
// O(n²) for n one-byte reads. An HTTP head can only complete with a new
// '\n'; a v2 PROXY header only once its announced length has arrived. The
// first look is never skipped, so garbage is refused at once.
func worthParsing(st sessState, mode string, b []byte, scanned int) bool {
	if scanned == 0 || scanned > len(b) {
		return true
	}
	switch {
	case st == stProxyHeader:
		if len(b) >= 16 && b[0] == '\r' && b[12]>>4 == 2 {
			return len(b) >= 16+int(binary.BigEndian.Uint16(b[14:16]))
		}
	case mode == ModeHTTPConnect:
		return bytes.IndexByte(b[scanned:], '\n') >= 0
	}
	return true
}

// authFailed counts a failed login, charges it to the source's rate limit
// (password guessing costs like connecting), and closes after the reply.
func (s *session) authFailed(now time.Time) {
	if lim := s.lc.Limiter; lim != nil {
		lim.Penalize(s.client.Addr(), 1, now)
	}
	s.linger(ReasonAuthFailed)
}

// reply writes a handshake reply to the client now; what the socket does not
// take waits in s.down for write interest. It reports false if the session
// was closed.
func (s *session) reply(b []byte) bool {
	d := &s.down
	if d.pending() == 0 {
		n, err := nbsys.Write(s.c.fd, b)
		if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			s.fail(err)
			return false
		}
		b = b[max(n, 0):]
		if len(b) == 0 {
			return true
		}
	}
	if d.buf == nil {
		d.buf = s.loop.srv.getBuf()
		s.loop.st.bufsHeld.Add(1)
		d.off, d.end = 0, 0
	}
	if len(*d.buf)-int(d.end) < len(b) { // replies are tens of bytes; a buffer is ≥ 1 KiB
		s.close(ReasonError, true)
		return false
	}
	d.end += int32(copy((*d.buf)[d.end:], b))
	return true
}

// flushReply writes queued reply bytes; in stLinger the write side is shut
// once they are out. It reports false if the session was closed.
func (s *session) flushReply() bool {
	d := &s.down
	if d.pending() > 0 {
		n, err := nbsys.Write(s.c.fd, (*d.buf)[d.off:d.end])
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				return true
			}
			s.close(s.closeReason(), true)
			return false
		}
		if d.off += int32(n); d.off < d.end {
			return true
		}
		s.loop.srv.putBuf(d.buf)
		s.loop.st.bufsHeld.Add(-1)
		d.buf, d.off, d.end = nil, 0, 0
	}
	if s.state == stLinger && !d.shut {
		d.shut = true
		_ = nbsys.Shutdown(s.c.fd, unix.SHUT_WR)
	}
	return true
}

func (s *session) closeReason() Reason {
	if s.state == stLinger {
		return s.hs.reason
	}
	return ReasonError
}

// linger ends a failed handshake gracefully: the reply (already written or
// queued) goes out, then FIN, and the client's unread bytes are drained until
// its EOF or lingerTimeout, since closing with unread input would make the
// kernel send a RST that can destroy the reply in flight.
func (s *session) linger(reason Reason) {
	l := s.loop
	s.hs.reason = reason
	s.state = stLinger
	s.hs.in, s.hs.off = nil, 0 // unparsed bytes: drained, never parsed
	s.release(&s.up)           // early payload that will never be sent
	if s.up.eof {              // the client is done already: nothing to drain
		if s.down.pending() == 0 {
			s.close(reason, false)
			return
		}
	}
	if !s.flushReply() {
		return
	}
	now := l.ev.Now()
	s.hs.deadline = now.Add(min(lingerTimeout, s.handshakeTimeout()))
	l.ev.Wheel().ScheduleAt(&s.timer, s.hs.deadline)
	s.update()
}

// drain discards client input in stLinger.
func (s *session) drain() {
	l := s.loop
	for range 4 {
		n, err := nbsys.Read(s.c.fd, l.scratch)
		switch {
		case n > 0:
			if n < len(l.scratch) {
				return
			}
			continue
		case err == nil: // EOF: the client has read our reply and gone
			if s.down.pending() == 0 {
				s.close(s.hs.reason, false)
			} else {
				s.up.eof = true
			}
			return
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return
		default:
			s.close(s.hs.reason, true)
			return
		}
	}
}

// updateEdge registers the client's interest before an upstream exists.
func (s *session) updateEdge() {
	var want uint8
	switch s.state {
	case stLinger:
		if !s.up.eof {
			want = evRead
		}
	case stResolving:
		// The parsed request is gone; what follows is payload, kept up to
		// one buffer as in forward mode before the connect.
		if !s.up.eof && (s.up.buf == nil || int(s.up.end) < len(*s.up.buf)) {
			want = evRead
		}
	default:
		// A parse phase: advance closes a session whose unparsed bytes
		// reached edgeBound, so there is always room to read.
		want = evRead
	}
	if s.down.pending() > 0 {
		want |= evWrite
	}
	if err := s.loop.setInterest(s.c.fd, &s.c.ev, want); err != nil {
		s.fail(err)
	}
}

// onEdgeTimer ends a handshake that overran HandshakeTimeout, or a linger.
func (s *session) onEdgeTimer(now time.Time) {
	if now.Before(s.hs.deadline) {
		s.loop.ev.Wheel().ScheduleAt(&s.timer, s.hs.deadline)
		return
	}
	if s.state == stLinger {
		s.close(s.hs.reason, false)
		return
	}
	if s.state == stPeek {
		s.peek(now, s.hs.in, true, false) // nothing sent: route as other; a partial first message: closed
		if s.state != stClosed {
			s.update()
		}
		return
	}
	if s.state == stHandshake && s.lc.Mode == ModeHTTPConnect {
		// An HTTP client is owed an answer: 408, then the graceful close
		// every error reply gets (so unread bytes do not turn it into a RST).
		if s.reply(http408) {
			s.linger(ReasonHandshakeTimeout)
		}
		return
	}
	s.close(ReasonHandshakeTimeout, false)
}

var http408 = []byte("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
