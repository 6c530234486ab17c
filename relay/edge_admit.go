//go:build linux

package relay

import (
	"time"

	"github.com/relayd/relayd/edge/socks5"
)

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
	if proxyIn || cfg.ProxySend != 0 || (cfg.Mode != "" && cfg.Mode != ModeForward) || cfg.edge.routes != nil {
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
		if s.lc.edge.routes != nil {
			s.startPeek(now) // what followed the PROXY header is the first message
			return
		}
		if s.hs != nil {
			s.handOver() // what followed the PROXY header is payload
		}
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
