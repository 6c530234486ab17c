//go:build linux

package relay

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Bounds of a Sessions query.
const (
	DefaultSessionsLimit = 100
	MaxSessionsLimit     = 1000
	// MaxSessionsWindow bounds offset+limit: what each loop copies for
	// one query, so a query costs a loop at most this many small copies
	// whatever the number of sessions.
	MaxSessionsWindow = 100000
)

// SessionQuery selects sessions for Sessions. Empty fields match all.
type SessionQuery struct {
	ID           uint64 // one session (SessionInfo.ID); 0: any
	Listener     string
	Upstream     netip.AddrPort // the connected upstream
	ClientPrefix netip.Prefix   // the client address within it
	Offset       int
	Limit        int // 0 means DefaultSessionsLimit; at most MaxSessionsWindow (an API gives its users MaxSessionsLimit)
}

// SessionInfo is one open session as its loop saw it.
type SessionInfo struct {
	ID        uint64 // unique while it is open: loop and sequence
	Listener  string
	Client    netip.AddrPort
	Upstream  netip.AddrPort // zero until connected
	Loop      int
	State     string // connecting, relaying, proxy_header, handshake, peek (routes), resolving, linger
	Began     time.Time
	Idle      time.Duration // since bytes last moved
	BytesUp   uint64        // client -> upstream so far
	BytesDown uint64
}

// SessionsPage is one page of a Sessions answer, oldest session first.
type SessionsPage struct {
	Total    int // sessions matching the query (over all loops)
	Sessions []SessionInfo
}

var stateNames = [...]string{stConnecting: "connecting", stRelaying: "relaying", stClosed: "closed",
	stProxyHeader: "proxy_header", stHandshake: "handshake", stResolving: "resolving", stLinger: "linger", stPeek: "peek"}

// Sessions lists open sessions matching q, oldest first. Each loop is
// asked on its own goroutine (a task in its queue, never a lock): it
// counts its matches and copies at most offset+limit of its oldest. The
// loops are then merged by start time.
func (s *Server) Sessions(q SessionQuery) SessionsPage {
	if q.Limit <= 0 {
		q.Limit = DefaultSessionsLimit
	}
	q.Limit = min(q.Limit, MaxSessionsWindow)
	q.Offset = min(max(q.Offset, 0), MaxSessionsWindow-q.Limit)
	window := q.Offset + q.Limit
	parts := make([][]SessionInfo, len(s.loops))
	totals := make([]int, len(s.loops))
	s.onLoops(func(l *loop) { parts[l.id], totals[l.id] = l.sessionsWindow(&q, window) })
	page := SessionsPage{}
	var all []SessionInfo
	for i := range parts {
		page.Total += totals[i]
		all = append(all, parts[i]...)
	}
	slices.SortStableFunc(all, func(a, b SessionInfo) int { return a.Began.Compare(b.Began) })
	if q.Offset < len(all) {
		page.Sessions = all[q.Offset:min(len(all), window)]
	}
	return page
}

// sessionsWindow is Sessions' task on loop l: it counts l's sessions
// matching q and copies the oldest window of them. Its cost is what a query
// takes from the loop: a walk of the loop's sessions and at most window
// copies (BenchmarkSessionsTask).
func (l *loop) sessionsWindow(q *SessionQuery, window int) ([]SessionInfo, int) {
	now := l.ev.Now()
	var out []SessionInfo
	n := 0
	for x := l.sessions.first(); x != nil; x = l.sessions.next(x) {
		if !x.matches(q) {
			continue
		}
		n++
		if out == nil { // one allocation at the first match, not a doubling series on the loop
			out = make([]SessionInfo, 0, min(window, int(max(l.st.active.Load(), 1))))
		}
		if len(out) < window {
			out = append(out, x.info(now))
		}
	}
	return out, n
}

// CloseSessions closes every open session matching q (its window is
// ignored) at once, both sides reset, counted as ReasonAdminClosed, and
// returns how many. Like Sessions, it runs as a task on each loop. An
// empty query is refused (ErrEmptyQuery): closing everything is Shutdown.
func (s *Server) CloseSessions(q SessionQuery) (int, error) {
	if q == (SessionQuery{Offset: q.Offset, Limit: q.Limit}) {
		return 0, ErrEmptyQuery
	}
	closed := make([]int, len(s.loops))
	s.onLoops(func(l *loop) {
		if q.ID != 0 && int(q.ID>>48) != l.id {
			return
		}
		for x := l.sessions.first(); x != nil; {
			next := l.sessions.next(x) // close unlinks x
			if x.matches(&q) {
				x.close(ReasonAdminClosed, true)
				closed[l.id]++
			}
			x = next
		}
	})
	n := 0
	for _, c := range closed {
		n += c
	}
	return n, nil
}

// ErrEmptyQuery: CloseSessions was asked to close every session.
var ErrEmptyQuery = errors.New("relay: a close names a session, listener, upstream or client")

func (x *session) matches(q *SessionQuery) bool {
	switch {
	case q.ID != 0 && x.id() != q.ID:
		return false
	case q.Listener != "" && !strings.EqualFold(x.ln.cfg.Name, q.Listener):
		return false
	case q.Upstream.IsValid() && x.upstream != q.Upstream:
		return false
	case q.ClientPrefix.IsValid() && !q.ClientPrefix.Contains(x.client.Addr()):
		return false
	}
	return true
}

// id is SessionInfo.ID: the loop in the top 16 bits, the loop's sequence
// number below (unique for 2^48 sessions per loop).
func (x *session) id() uint64 { return uint64(x.loop.id)<<48 | x.gen&(1<<48-1) }

func (x *session) info(now time.Time) SessionInfo {
	st := "?"
	if int(x.state) < len(stateNames) {
		st = stateNames[x.state]
	}
	return SessionInfo{
		ID: x.id(), Listener: x.ln.cfg.Name, Client: x.client, Upstream: x.upstream,
		Loop: x.loop.id, State: st, Began: x.began, Idle: max(now.Sub(x.lastActive), 0),
		BytesUp: x.up.n, BytesDown: x.down.n,
	}
}
