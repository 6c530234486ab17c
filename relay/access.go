//go:build linux

package relay

import (
	"time"

	"github.com/relayd/relayd/logging"
)

// Access records. Every session gets an end record when it closes. Two more
// kinds are optional, for sessions that live long enough that a record only
// at the end hides them (as Envoy's TCP proxy has access_log_flush_interval
// and flush_access_log_on_connected):
//
//   - a start record when the upstream connects (log.access_on_connect);
//   - an interim record each time a relaying session is another
//     log.access_interval older, with its bytes so far (cumulative, as the
//     end record's).
//
// Interim records cost no timer of their own: the session's one timer
// (idle / fin) is armed for the earlier of its inactivity deadline and the
// next record, and the record count lives in padding of the session struct.

// SetAccessRecords changes the optional access records (≤ 0 turns interim
// records off). Open sessions follow at once: their timers are re-armed on
// their loops for the new interval.
func (s *Server) SetAccessRecords(interval time.Duration, onConnect bool) {
	s.accessStart.Store(onConnect)
	every := max(interval, 0)
	if old := s.accessEvery.Swap(int64(every)); old == int64(every) {
		return
	}
	s.mu.Lock()
	started := s.started && !s.closed
	s.mu.Unlock()
	if !started {
		return
	}
	s.onLoops(func(l *loop) {
		now := l.ev.Now()
		for x := l.sessions.first(); x != nil; x = l.sessions.next(x) {
			if x.state != stRelaying {
				continue
			}
			if every > 0 {
				x.reports = uint32(now.Sub(x.began) / every) // only what is due from now on
			}
			x.rearm(now)
		}
	})
}

// nextReport is when s's next interim record is due; zero when none is
// (interim records off, or s is not relaying).
func (s *session) nextReport() time.Time {
	every := time.Duration(s.loop.srv.accessEvery.Load())
	if every <= 0 || s.state != stRelaying {
		return time.Time{}
	}
	return s.began.Add(time.Duration(s.reports+1) * every)
}

// report writes the interim record if it is due at now. A record that is
// late (a loop busy, a reload) is written once, not once per missed period.
func (s *session) report(now time.Time) {
	due := s.nextReport()
	if due.IsZero() || now.Before(due) {
		return
	}
	every := time.Duration(s.loop.srv.accessEvery.Load())
	s.reports = uint32(now.Sub(s.began) / every)
	s.logAccess(logging.AccessInterim, 0)
}

// logAccess writes one access record of s: the end record (with reason)
// from close, or a start or interim record.
func (s *session) logAccess(ev logging.AccessEvent, reason Reason) {
	l := s.loop
	log := l.srv.cfg.Log
	if !log.AccessEnabled() {
		return
	}
	now := l.ev.Refresh()
	e := logging.AccessEntry{
		Event: ev, Time: now, Listener: s.ln.cfg.Name, Client: s.client, Upstream: s.upstream, Loop: l.id,
		Connect: s.connectDur, Duration: now.Sub(s.began), BytesUp: s.up.n, BytesDown: s.down.n,
		Retries: int(max(s.attempts-1, 0)),
	}
	if ev == logging.AccessEnd {
		e.Reason = reason.String()
	}
	if hs := s.hs; hs != nil && hs.ask != nil { // an edge session that never got relayed, or its start record
		e.Target, e.User = hs.ask.target, hs.ask.user
	}
	if p := s.peeked; p != nil {
		e.Route, e.SNI = p.route, p.sni
	}
	log.Access(&e)
}
