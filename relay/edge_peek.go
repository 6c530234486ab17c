//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/edge/httphost"
	"github.com/relayd/relayd/edge/route"
	"github.com/relayd/relayd/edge/tlshello"
	"github.com/relayd/relayd/internal/nbsys"
	"golang.org/x/sys/unix"
)

// Routes: a forward listener with routes reads the client's first bytes
// (stPeek) before it asks for an upstream, and picks the upstream group
// from them — the SNI and ALPN of a TLS ClientHello, the Host of a
// plaintext HTTP/1.x request, or neither — as HAProxy does with
// inspect-delay and req.ssl_sni. Nothing is consumed: the bytes are read
// into hs.in like any handshake (bounded by the relay buffer and
// handshake_timeout), and every one of them is handed over to s.up and
// forwarded, so the upstream sees exactly what the client sent (its TLS
// server holds the key; relayd never terminates TLS).
//
// Each route is its own upstream group, registered with the connector as
// "LISTENER/ROUTE" (its caps, queue, health and admin state apart from the
// listener's own upstreams, which are the default group). A client that
// sends nothing waits for handshake_timeout like a trickling one, then
// goes to the group for "other" (server-speaks-first protocols: put them
// on a listener of their own).

// Route is one of a listener's routes: its match and its upstream group.
type Route struct {
	route.Rule
	Upstreams []netip.AddrPort // at least one
	LeastConn bool
	Weights   []int // nil = all 1
	Check     connector.CheckConfig
	Tries     int // 0 = len(Upstreams)
}

// groups is a listener's routing state, swapped whole by Update.
type groups struct {
	table *route.Table
	ups   []*upstreams     // per route, the table's order
	hits  []*atomic.Uint64 // sessions routed, per route (the listener's counters, kept across reloads)
	miss  *atomic.Uint64   // sessions that matched no route (the default group)
	names []string         // connector group names, for unregister
}

// groupName is a route group's name in the connector, metrics and control.
func groupName(listener, routeName string) string { return listener + "/" + routeName }

// validateRoutes checks lc.Routes (validate calls it) and compiles the
// table into lc.edge.
func (lc *ListenerConfig) validateRoutes() error {
	if len(lc.Routes) == 0 {
		lc.edge.routes = nil
		return nil
	}
	if lc.Mode != "" && lc.Mode != ModeForward {
		return fmt.Errorf("relay: listener %q: routes need mode forward", lc.Name)
	}
	rules := make([]route.Rule, len(lc.Routes))
	for i, r := range lc.Routes {
		rules[i] = r.Rule
		if len(r.Upstreams) == 0 {
			return fmt.Errorf("relay: listener %q: route %q: no upstreams", lc.Name, r.Name)
		}
		for _, u := range r.Upstreams {
			if !u.IsValid() || u.Port() == 0 {
				return fmt.Errorf("relay: listener %q: route %q: invalid upstream %v", lc.Name, r.Name, u)
			}
		}
		if r.Weights != nil && len(r.Weights) != len(r.Upstreams) {
			return fmt.Errorf("relay: listener %q: route %q: %d weights for %d upstreams", lc.Name, r.Name, len(r.Weights), len(r.Upstreams))
		}
		for _, w := range r.Weights {
			if w < 1 || w > MaxWeight {
				return fmt.Errorf("relay: listener %q: route %q: weight %d out of 1..%d", lc.Name, r.Name, w, MaxWeight)
			}
		}
		if err := r.Check.Validate("check"); err != nil {
			return fmt.Errorf("relay: listener %q: route %q: %w", lc.Name, r.Name, err)
		}
		if r.Tries < 0 {
			return fmt.Errorf("relay: listener %q: route %q: negative tries", lc.Name, r.Name)
		}
	}
	t, err := route.Compile(rules)
	if err != nil {
		return fmt.Errorf("relay: listener %q: %w", lc.Name, err)
	}
	lc.edge.routes = t
	lc.edge.active = true
	return nil
}

// registerGroups registers lc's route groups with the connector and
// builds their state; old is the listener's previous one (its groups that
// are gone are retired). Caller holds s.mu.
func (s *Server) registerGroups(lc *ListenerConfig, old *groups) (*groups, error) {
	var g *groups
	if t := lc.edge.routes; t != nil {
		g = &groups{table: t, miss: lc.edge.routeCounter(route.Default)}
		for _, r := range lc.Routes {
			name := groupName(lc.Name, r.Name)
			sub := ListenerConfig{Name: name, Upstreams: r.Upstreams, Check: r.Check, Weights: r.Weights, LeastConn: r.LeastConn, Tries: r.Tries}
			ups, err := s.register(&sub)
			if err != nil {
				return nil, err
			}
			g.ups = append(g.ups, ups)
			g.hits = append(g.hits, lc.edge.routeCounter(r.Name))
			g.names = append(g.names, name)
		}
	}
	if old != nil {
		for _, n := range old.names {
			if g == nil || !contains(g.names, n) {
				s.unregister(n)
			}
		}
	}
	return g, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// routeCounter is the listener's counter of sessions sent to the named
// route, made on first use and kept for the listener's life.
func (e *edgeCounts) routeCounter(name string) *atomic.Uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.routed == nil {
		e.routed = map[string]*atomic.Uint64{}
	}
	c := e.routed[name]
	if c == nil {
		c = new(atomic.Uint64)
		e.routed[name] = c
	}
	return c
}

// peekInfo is what a routed session keeps for its access line.
type peekInfo struct {
	route string // the route's name, or route.Default
	sni   string
}

// startPeek begins reading the client's first bytes for routing; what
// followed a PROXY header (in hs.in) is the start of them.
func (s *session) startPeek(now time.Time) {
	s.state = stPeek
	s.hs.in = s.hs.in[:copy(s.hs.in, s.hs.in[s.hs.off:])]
	s.hs.off, s.hs.scanned = 0, 0
	s.advance(now)
	if s.state != stClosed {
		s.update()
	}
}

// peekRead reads client bytes while peeking. The common client sends its
// whole first message in one segment: it is classified from the loop's
// scratch buffer where the read put it and copied once, into s.up, like
// any early payload. Only a partial one is kept in hs.in (a slice that
// grows with what was sent: a stalled client costs its bytes, not a relay
// buffer) and classified again as more arrives.
func (s *session) peekRead(now time.Time) {
	l, hs := s.loop, s.hs
	room := s.edgeBound() - len(hs.in)
	if room <= 0 {
		return // full: peek has closed it already (a zero-length read would look like EOF)
	}
	n, err := nbsys.Read(s.c.fd, l.scratch[:min(room, len(l.scratch))])
	switch {
	case n > 0:
		if len(hs.in) == 0 {
			if s.peek(now, l.scratch[:n], false, false) {
				return
			}
			hs.in = append(hs.in, l.scratch[:n]...)
			hs.scanned = n
			return
		}
		hs.in = append(hs.in, l.scratch[:n]...)
		s.advance(now)
	case err == nil: // EOF: the first message, if whole, is in hs.in already
		s.peek(now, hs.in, false, true)
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
	default:
		s.fail(err)
	}
}

// peek classifies b, the client's bytes so far, and once it can, routes
// the session: b goes to s.up to be forwarded (from the scratch buffer, or
// from hs.in), and the route's group is dialled. It reports whether the
// session moved on (routed or closed); false: more bytes are needed.
// timedOut: the handshake deadline passed; eof: the client half-closed.
func (s *session) peek(now time.Time, b []byte, timedOut, eof bool) bool {
	full := len(b) >= s.edgeBound() || eof // more cannot come
	in := route.Input{Protocol: route.Other}
	switch {
	case len(b) == 0:
		if eof {
			s.close(ReasonHandshakeError, false) // closed without a byte: nothing to route
			return true
		}
		if !timedOut {
			return false
		}
	case b[0] == 0x16 || b[0]&0x80 != 0:
		h, err := tlshello.Parse(b)
		switch {
		case errors.Is(err, tlshello.ErrNeedMore):
			if full || timedOut {
				s.close(incomplete(timedOut), false)
				return true
			}
			return false
		case errors.Is(err, tlshello.ErrNotTLS):
		case err != nil:
			s.close(ReasonHandshakeError, false) // SSLv2 or malformed: nothing a TLS server would take
			return true
		default:
			in = route.Input{Protocol: route.TLS, SNI: h.ServerName, ALPN: h.ALPN}
		}
	default:
		if ok, more := httphost.IsStart(b); ok || more {
			host, err := httphost.Parse(b)
			switch {
			case errors.Is(err, httphost.ErrNeedMore):
				if full || timedOut {
					s.close(incomplete(timedOut), false)
					return true
				}
				return false
			case errors.Is(err, httphost.ErrNotHTTP):
			case err != nil:
				s.close(ReasonHandshakeError, false)
				return true
			default:
				in = route.Input{Protocol: route.HTTP, Host: host}
			}
		}
	}
	g := s.ln.groups.Load()
	ups, name := s.ln.ups.Load(), route.Default
	if g != nil { // nil: a reload removed the routes meanwhile
		if i := g.table.Match(&in); i >= 0 {
			ups, name = g.ups[i], g.table.Name(i)
			g.hits[i].Add(1)
		} else {
			g.miss.Add(1)
		}
	}
	s.peeked = &peekInfo{route: name, sni: in.SNI}
	if len(s.hs.in) > 0 {
		s.handOver() // hs.off is 0 while peeking: all of it
	} else if len(b) > 0 {
		s.hold(&s.up)
		s.up.end = int32(copy(*s.up.buf, b))
	}
	s.up.eof = eof
	s.dial(now, ups)
	return true
}

// incomplete is the close reason of a first message that did not complete:
// it ran out of time, or it does not fit in the buffer.
func incomplete(timedOut bool) Reason {
	if timedOut {
		return ReasonHandshakeTimeout
	}
	return ReasonHandshakeError
}
