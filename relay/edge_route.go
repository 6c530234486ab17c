//go:build linux

package relay

import (
	"net/netip"
	"sync"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/edge/httpconnect"
	"github.com/relayd/relayd/edge/policy"
	"github.com/relayd/relayd/edge/proxyproto"
	"github.com/relayd/relayd/edge/resolve"
	"github.com/relayd/relayd/edge/socks5"
	"github.com/relayd/relayd/internal/nbsys"
	"golang.org/x/sys/unix"
)

// route checks an IP target or resolves a name target off the loop.
func (s *session) route(host string, addr netip.AddrPort, port uint16) {
	if host == "" {
		s.checkAndDial(addr)
		return
	}
	res := s.lc.Resolver
	if res == nil {
		s.failReply(resolve.ErrNoAddresses, ReasonResolveFailed)
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
		out = socks5.AppendReply(s.loop.out[:0], socks5.NotAllowed, netip.AddrPort{})
	} else {
		out = httpconnect.AppendResponse(s.loop.out[:0], 403)
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
		out = socks5.AppendReply(s.loop.out[:0], socks5.DialReply(err), netip.AddrPort{})
	} else {
		out = httpconnect.AppendResponse(s.loop.out[:0], httpconnect.DialStatus(err))
	}
	if s.reply(out) {
		s.linger(reason)
	}
}

// dialTarget asks the connector for exactly ap: no second resolution.
func (s *session) dialTarget(ap netip.AddrPort) {
	s.hs.target[0] = ap
	l := s.loop
	s.req = l.newRequest(s, s.hs.target[:], nil, 1)
	s.state = stConnecting
	if err := l.srv.cfg.Dialer.Submit(s.req); err != nil {
		l.freeRequest(s.req)
		s.req = nil
		s.state = stHandshake // not connecting: nothing to cancel
		s.failReply(err, submitReason(err))
		return
	}
	s.update()
}

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
			hdr = proxyproto.AppendV1(s.loop.out[:0], s.client, s.hs.local)
		} else {
			hdr, _ = proxyproto.AppendV2(s.loop.out[:0], s.client, s.hs.local) // no TLVs: cannot fail
		}
		// A fresh connection's send buffer is empty: a header of at most
		// 107 bytes is taken whole, or the socket is broken.
		if n, err := nbsys.Write(s.u.fd, hdr); err != nil || n != len(hdr) {
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
		out = socks5.AppendReply(s.loop.out[:0], socks5.Succeeded, bound)
	case ModeHTTPConnect:
		out = append(s.loop.out[:0], httpconnect.Established...)
	default:
		return true
	}
	return s.reply(out)
}
