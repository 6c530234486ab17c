package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/httpconnect"
	"github.com/relayd/relayd/policy"
	"github.com/relayd/relayd/proxyproto"
	"github.com/relayd/relayd/socks5"
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
// All bytes are read into the session's up buffer (s.up): s.up.off is the
// parse position, so whatever follows the header or request is already
// where the connected state expects pending client bytes, and is forwarded.
// Replies are written straight to the client fd; what the socket refuses is
// queued in s.down and flushed on write interest.
//
// The whole pre-relay phase is bounded by HandshakeTimeout via the session
// timer. A plain forward listener without edge settings never gets here.

const (
	defaultHandshakeTimeout = 10 * time.Second
	lingerTimeout           = time.Second // upper bound for draining after a failure reply
	sweepEvery              = 5 * time.Second
)

// edgeState is what validate derives from a ListenerConfig's edge settings.
// It belongs to one ListenerConfig (a reload makes a new one); the counters
// it points to belong to the listener and carry over reloads.
type edgeState struct {
	active  bool // any edge setting: sessions take the edge path
	httpCfg httpconnect.Config
	*edgeCounts
}

// edgeCounts are a listener's refusal counters. They are on the rare path
// (a refusal), so a mutex-guarded map is fine; accepted sessions touch none.
type edgeCounts struct {
	mu       sync.Mutex // guards denied, rejected
	denied   map[string]uint64
	rejected map[string]uint64

	lastSweep atomic.Int64 // unix nanos of the last SourceLimiter.Sweep
}

// edgeCounters is the name ListenerConfig uses for the state.
type edgeCounters = edgeState

// prepareEdge fills the derived edge settings; validate calls it. A buffer
// (relay.Config.BufferSize) smaller than the HTTP head bound makes a longer
// head fail as too large when the buffer is full. Counters already attached
// (Update carries the listener's over) are kept.
func (lc *ListenerConfig) prepareEdge() {
	if lc.edge == nil {
		lc.edge = &edgeState{}
	}
	e := lc.edge
	if e.edgeCounts == nil {
		e.edgeCounts = &edgeCounts{denied: map[string]uint64{}, rejected: map[string]uint64{}}
	}
	e.active = (lc.Mode != "" && lc.Mode != ModeForward) || lc.ProxyAccept != 0 || lc.ProxySend != 0 ||
		lc.ACL != nil || lc.Limiter != nil
	e.httpCfg = httpconnect.Config{Verify: lc.Verify, MaxHead: httpconnect.DefaultMaxHead}
}

func (e *edgeCounts) countDenied(rule string) {
	e.mu.Lock()
	e.denied[rule]++
	e.mu.Unlock()
}

func (e *edgeCounts) countRejected(rule string) {
	e.mu.Lock()
	e.rejected[rule]++
	e.mu.Unlock()
}

// maybeSweep lets one session every sweepEvery drop the limiter's idle
// sources, so its table does not fill with sources long gone.
func (e *edgeCounts) maybeSweep(lim *policy.SourceLimiter, now time.Time) {
	last := e.lastSweep.Load()
	if now.UnixNano()-last < int64(sweepEvery) || !e.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	lim.Sweep(now)
}

// EdgeStats is one listener's refusal counters by rule.
type EdgeStats struct {
	PolicyDenied   map[string]uint64 // destination refusals by policy rule ("loopback", "self", "allow:..." ...)
	SourceRejected map[string]uint64 // ACL and per-source limit refusals by rule ("acl-deny", "source-rate" ...)
}

// EdgeStats returns each listener's edge counters (by listener name). The
// close reasons (rejected_acl, policy_denied, auth_failed ...) are in Stats.
func (s *Server) EdgeStats() map[string]EdgeStats {
	s.mu.Lock()
	lns := append(s.retired[:len(s.retired):len(s.retired)], s.listeners...)
	s.mu.Unlock()
	out := make(map[string]EdgeStats, len(lns))
	for _, ln := range lns {
		e := ln.config().edge
		if e == nil {
			continue
		}
		es, ok := out[ln.cfg.Name]
		if !ok {
			es = EdgeStats{PolicyDenied: map[string]uint64{}, SourceRejected: map[string]uint64{}}
		}
		e.mu.Lock()
		for k, v := range e.denied {
			es.PolicyDenied[k] += v
		}
		for k, v := range e.rejected {
			es.SourceRejected[k] += v
		}
		e.mu.Unlock()
		out[ln.cfg.Name] = es
	}
	return out
}

// handshake is a session's edge state; nil for sessions that need none.
type handshake struct {
	socks    socks5.Server
	local    netip.AddrPort // where the client connected to (the PROXY header's Dst when one was accepted)
	target   [1]netip.AddrPort
	port     uint16 // target port of a name request
	deadline time.Time
	reason   Reason // stLinger: the reason the session will close with
	scanned  int    // bytes after s.up.off already seen by a parser that said ErrNeedMore
	out      [64]byte
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

func (s *session) handshakeTimeout() time.Duration {
	if d := s.lc.HandshakeTimeout; d > 0 {
		return d
	}
	return defaultHandshakeTimeout
}

func (s *session) trustedPeer() bool {
	a := s.client.Addr().Unmap()
	for _, p := range s.lc.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// startEdge runs instead of the forward start for listeners with edge
// settings. The session is registered on the loop; no upstream exists.
func (s *session) startEdge(now time.Time) {
	cfg := s.lc
	proxyIn := cfg.ProxyAccept != 0 && s.trustedPeer()
	if proxyIn || cfg.ProxySend != 0 || (cfg.Mode != "" && cfg.Mode != ModeForward) {
		s.hs = &handshake{}
		if cfg.Verify != nil {
			s.hs.socks = socks5.New(socks5.Config{Verify: cfg.Verify})
		}
		s.hs.deadline = now.Add(s.handshakeTimeout())
		s.loop.ev.Wheel().ScheduleAt(&s.timer, s.hs.deadline)
	}
	if proxyIn {
		s.state = stProxyHeader
		s.update()
		return
	}
	s.admitted(now)
}

// admitted continues once the real client address is known: admission, then
// forward or the handshake.
func (s *session) admitted(now time.Time) {
	if !s.admitSource(now) {
		return
	}
	if m := s.lc.Mode; m == "" || m == ModeForward {
		s.dialForward(now)
		return
	}
	s.state = stHandshake
	s.advance(now)
	if s.state != stClosed {
		s.update()
	}
}

// admitSource applies the ACL and the per-source limiter to s.client; on a
// refusal the session is closed (with a RST: the client gets nothing else).
func (s *session) admitSource(now time.Time) bool {
	cfg := s.lc
	ip := s.client.Addr()
	if cfg.ACL != nil {
		if rule, ok := cfg.ACL.Check(ip); !ok {
			cfg.edge.countRejected(rule)
			s.close(ReasonRejectedACL, true)
			return false
		}
	}
	if cfg.Limiter != nil {
		rule, ok := cfg.Limiter.Acquire(ip, now)
		if !ok {
			cfg.edge.countRejected(rule)
			s.close(ReasonRejectedSourceLimit, true)
			return false
		}
		s.limited = true
		cfg.edge.maybeSweep(cfg.Limiter, now)
	}
	return true
}

// onEdgeEvent handles client events before an upstream exists.
func (s *session) onEdgeEvent(ev netpoll.IOEvent) {
	errEv := ev&netpoll.ErrEvents != 0
	if s.c.ev&evWrite != 0 && (ev&netpoll.WriteEvents != 0 || errEv) {
		if !s.flushReply() {
			return
		}
	}
	if s.c.ev&evRead != 0 && (ev&netpoll.ReadEvents != 0 || errEv) {
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

// edgeRead reads client bytes into s.up and feeds them to the current phase.
func (s *session) edgeRead() {
	l := s.loop
	d := &s.up
	if d.buf == nil {
		d.buf = l.srv.getBuf()
		l.st.bufsHeld.Add(1)
	}
	if d.off > 0 && s.state != stResolving { // parse position at the start: room for a longer header
		d.end = copy(*d.buf, (*d.buf)[d.off:d.end])
		d.off = 0
	}
	if d.end == len(*d.buf) {
		return // full (stResolving): a zero-length read would look like EOF
	}
	n, err := unix.Read(s.c.fd, (*d.buf)[d.end:])
	switch {
	case n > 0:
		d.end += n
		if s.state != stResolving {
			s.advance(l.ev.Now())
		}
	case err == nil: // EOF
		if s.state == stResolving {
			d.eof = true // the request is complete: a half-close is the client's right
			return
		}
		s.close(ReasonHandshakeError, false) // truncated header or request
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
	default:
		s.fail(err)
	}
}

// advance parses what s.up holds for the current phase, moving on as far as
// the bytes allow (a client may pipeline PROXY header, greeting, auth and
// request in one segment).
func (s *session) advance(now time.Time) {
	cfg := s.lc
	d := &s.up
	if s.state != stProxyHeader && s.state != stHandshake {
		return
	}
	if d.buf == nil {
		return
	}
	b := (*d.buf)[d.off:d.end]
	full := d.off == 0 && d.end == len(*d.buf)
	if !full && !worthParsing(s.state, cfg.Mode, b, s.hs.scanned) {
		return
	}
	s.hs.scanned = len(b)
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
		d.off += n
		s.hs.scanned = 0
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
		n, out, err := s.hs.socks.Feed(b, s.hs.out[:0])
		d.off += n
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
			s.authFailed(now)
			return
		case err != nil:
			s.linger(ReasonHandshakeError)
			return
		}
		r := s.hs.socks.Request()
		host, addr, port = r.Host, r.Addr, r.Port
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
			if !s.reply(httpconnect.AppendError(s.hs.out[:0], err)) {
				return
			}
			if errors.Is(err, httpconnect.ErrAuthFailed) || errors.Is(err, httpconnect.ErrAuthRequired) {
				s.authFailed(now)
			} else {
				s.linger(ReasonHandshakeError)
			}
			return
		}
		d.off += n
		host, addr, port = r.Host, r.Addr, r.Port
	}
	s.route(host, addr, port)
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

// route checks an IP target or resolves a name target off the loop.
func (s *session) route(host string, addr netip.AddrPort, port uint16) {
	if host == "" {
		s.checkAndDial(addr)
		return
	}
	res := s.lc.Resolver
	if res == nil {
		s.failReply(policy.ErrNoAddresses, ReasonResolveFailed)
		return
	}
	s.state = stResolving
	s.hs.port = port
	l, gen := s.loop, s.gen
	if err := res.Resolve(host, func(addrs []netip.Addr, err error) {
		l.st.queued.Add(1)
		if l.ev.PostFunc(resolvedTask, &resolveResult{s: s, gen: gen, addrs: addrs, err: err}) != nil {
			l.st.queued.Add(-1)
		}
	}); err != nil {
		s.failReply(err, ReasonResolveFailed)
	}
}

// resolved runs on the loop with the resolver's answer. A session that ended
// (or any other one) meanwhile ignores it.
func (s *session) resolved(r *resolveResult) {
	if s.state != stResolving || r.gen != s.gen {
		return
	}
	if r.err != nil {
		s.failReply(r.err, ReasonResolveFailed)
		return
	}
	ap, rule, ok := s.policy().Pick(r.addrs, s.hs.port)
	if ok && s.isSelf(ap) {
		rule, ok = policy.RuleSelf, false
	}
	if !ok {
		s.deny(rule)
		return
	}
	s.dialTarget(ap)
}

func (s *session) policy() *policy.Policy {
	if p := s.lc.Policy; p != nil {
		return p
	}
	return defaultPolicy()
}

var defaultPolicy = sync.OnceValue(func() *policy.Policy {
	p, err := policy.New(policy.Config{})
	if err != nil {
		panic(err) // the empty config is always valid
	}
	return p
})

// isSelf reports whether ap is this session's own listener: the policy's
// AddSelf covers configured addresses, this also a port the kernel picked.
func (s *session) isSelf(ap netip.AddrPort) bool {
	self := s.ln.addr
	if ap.Port() != self.Port() {
		return false
	}
	a, b := ap.Addr().Unmap(), self.Addr().Unmap()
	return a == b || (b.IsUnspecified() && (a.IsLoopback() || a.IsUnspecified()))
}

func (s *session) checkAndDial(ap netip.AddrPort) {
	rule, ok := s.policy().Check(ap)
	if ok && s.isSelf(ap) {
		rule, ok = policy.RuleSelf, false
	}
	if !ok {
		s.deny(rule)
		return
	}
	s.dialTarget(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

func (s *session) deny(rule string) {
	s.lc.edge.countDenied(rule)
	var out []byte
	if s.lc.Mode == ModeSOCKS5 {
		out = socks5.AppendReply(s.hs.out[:0], socks5.NotAllowed, netip.AddrPort{})
	} else {
		out = httpconnect.AppendResponse(s.hs.out[:0], 403)
	}
	if s.reply(out) {
		s.linger(ReasonPolicyDenied)
	}
}

// failReply tells the client its target could not be reached (err from the
// resolver or the connector), then closes with reason.
func (s *session) failReply(err error, reason Reason) {
	var out []byte
	if s.lc.Mode == ModeSOCKS5 {
		out = socks5.AppendReply(s.hs.out[:0], socks5.DialReply(err), netip.AddrPort{})
	} else {
		out = httpconnect.AppendResponse(s.hs.out[:0], httpconnect.DialStatus(err))
	}
	if s.reply(out) {
		s.linger(reason)
	}
}

// dialTarget asks the connector for exactly ap: no second resolution.
func (s *session) dialTarget(ap netip.AddrPort) {
	s.hs.target[0] = ap
	s.req = connector.Request{Addrs: s.hs.target[:], Tries: 1, Handler: s, Cookie: s.gen,
		Timeout: time.Duration(s.loop.srv.connectTimeout.Load())}
	s.state = stConnecting
	if err := s.loop.srv.cfg.Dialer.Submit(&s.req); err != nil {
		s.state = stHandshake // not connecting: nothing to cancel
		s.failReply(err, ReasonRejectedQueueFull)
		return
	}
	s.update()
}

// reply writes a handshake reply to the client now; what the socket does not
// take waits in s.down for write interest. It reports false if the session
// was closed.
func (s *session) reply(b []byte) bool {
	d := &s.down
	if d.pending() == 0 {
		n, err := unix.Write(s.c.fd, b)
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
	if len(*d.buf)-d.end < len(b) { // replies are tens of bytes; a buffer is ≥ 1 KiB
		s.close(ReasonError, true)
		return false
	}
	d.end += copy((*d.buf)[d.end:], b)
	return true
}

// flushReply writes queued reply bytes; in stLinger the write side is shut
// once they are out. It reports false if the session was closed.
func (s *session) flushReply() bool {
	d := &s.down
	if d.pending() > 0 {
		n, err := unix.Write(s.c.fd, (*d.buf)[d.off:d.end])
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				return true
			}
			s.close(s.closeReason(), true)
			return false
		}
		if d.off += n; d.off < d.end {
			return true
		}
		s.loop.srv.putBuf(d.buf)
		s.loop.st.bufsHeld.Add(-1)
		d.buf, d.off, d.end = nil, 0, 0
	}
	if s.state == stLinger && !d.shut {
		d.shut = true
		_ = unix.Shutdown(s.c.fd, unix.SHUT_WR)
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
	if d := &s.up; d.buf != nil {
		l.srv.putBuf(d.buf)
		l.st.bufsHeld.Add(-1)
		d.buf, d.off, d.end = nil, 0, 0
	}
	if s.up.eof { // the client is done already: nothing to drain
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
		n, err := unix.Read(s.c.fd, l.scratch)
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
	default:
		// The parse phases compact the buffer before reading; stResolving
		// only appends (the parsed request is gone, the rest is payload).
		if !s.up.eof && (s.up.buf == nil || s.up.end < len(*s.up.buf) || (s.up.off > 0 && s.state != stResolving)) {
			want = evRead
		}
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

// edgeConnected finishes the handshake once the connector has an upstream
// in s.u.fd: the PROXY header toward it, then the client's success reply. It
// reports false if the session was closed.
func (s *session) edgeConnected(r *connector.Request) bool {
	cfg := s.lc
	if cfg.ProxySend != 0 {
		if !s.hs.local.IsValid() {
			if sa, err := unix.Getsockname(s.c.fd); err == nil {
				s.hs.local = addrPort(sa)
			}
		}
		var hdr []byte
		if cfg.ProxySend == proxyproto.V1 {
			hdr = proxyproto.AppendV1(s.hs.out[:0], s.client, s.hs.local)
		} else {
			hdr, _ = proxyproto.AppendV2(s.hs.out[:0], s.client, s.hs.local) // no TLVs: cannot fail
		}
		// A fresh connection's send buffer is empty: a header of at most
		// 107 bytes is taken whole, or the socket is broken.
		if n, err := unix.Write(s.u.fd, hdr); err != nil || n != len(hdr) {
			if err == nil {
				err = unix.EAGAIN
			}
			s.fail(err)
			return false
		}
	}
	var out []byte
	switch cfg.Mode {
	case ModeSOCKS5:
		var bound netip.AddrPort
		if sa, err := unix.Getsockname(s.u.fd); err == nil {
			bound = addrPort(sa)
		}
		out = socks5.AppendReply(s.hs.out[:0], socks5.Succeeded, bound)
	case ModeHTTPConnect:
		out = append(s.hs.out[:0], httpconnect.Established...)
	default:
		return true
	}
	return s.reply(out)
}
