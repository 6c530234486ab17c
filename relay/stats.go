//go:build linux

package relay

import (
	"net/netip"
	"sync/atomic"
)

// Reason says why a session ended. Every close is counted under one.
type Reason uint8

// Close reasons. Their String values are the access log's and the metrics'
// label values.
const (
	ReasonEOF                 Reason = iota // both directions finished cleanly
	ReasonIdleTimeout                       // no byte either way for relay.idle_timeout
	ReasonFinTimeout                        // half-closed for longer than relay.fin_timeout
	ReasonConnectTimeout                    // every upstream attempt timed out
	ReasonRefused                           // upstream refused (last attempt)
	ReasonConnectFailed                     // unreachable, no local address, other connect errors
	ReasonReset                             // a peer reset its connection (the other one is reset too), or broke off a direction (the other gets a clean FIN after what was owed)
	ReasonError                             // another socket error on an established session
	ReasonShutdown                          // closed by Close or at the end of the drain
	ReasonRejectedQueueFull                 // connector queue full: client rejected at once
	ReasonRejectedLimit                     // limits.max_sessions (global or per listener) reached
	ReasonRejectedACL                       // source address refused by the listener's ACL
	ReasonRejectedSourceLimit               // per-source concurrency or rate limit
	ReasonHandshakeTimeout                  // PROXY header / SOCKS5 / CONNECT not done within handshake_timeout
	ReasonHandshakeError                    // malformed, truncated or unsupported handshake
	ReasonAuthFailed                        // missing or wrong credentials
	ReasonPolicyDenied                      // destination refused by the policy (counted by rule too)
	ReasonResolveFailed                     // target name did not resolve (or the resolver was full)
	ReasonUpstreamsDown                     // every upstream of the listener is marked down: rejected at once
	ReasonAdminClosed                       // closed by an operator (CloseSessions: relayd ctl close)
	numReasons
)

var reasonNames = [numReasons]string{
	"eof", "idle_timeout", "fin_timeout", "connect_timeout", "refused", "connect_failed",
	"reset", "error", "shutdown", "rejected_queue_full", "rejected_limit",
	"rejected_acl", "rejected_source_limit", "handshake_timeout", "handshake_error", "auth_failed",
	"policy_denied", "resolve_failed", "upstreams_down", "admin_closed",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every close reason, for exporters that want all label values
// present from the start.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Accept error kinds, counted per loop.
const (
	acceptEMFILE = iota
	acceptENFILE
	acceptENOBUFS
	acceptOther
	numAcceptErrs
)

var acceptErrNames = [numAcceptErrs]string{"emfile", "enfile", "enobufs", "other"}

// counters is written by the owning loop — except queued, which the
// goroutines that post tasks to the loop increment (connector workers, the
// resolver, another loop handing over a session) — and read by Stats from any
// goroutine, hence atomics without contention.
type counters struct {
	accepted     atomic.Uint64
	active       atomic.Int64
	closed       [numReasons]atomic.Uint64
	acceptErrs   [numAcceptErrs]atomic.Uint64
	bytesUp      atomic.Uint64 // client -> upstream, bytes written to the upstream
	bytesDown    atomic.Uint64
	pauses       atomic.Uint64 // a side stopped being read because its peer was not writable
	resumes      atomic.Uint64
	bufsHeld     atomic.Int64  // pooled buffers held by sessions right now
	spliced      atomic.Uint64 // directions that switched to splice(2)
	acceptPaused atomic.Uint64 // accept back-off episodes (EMFILE & co.)
	queued       atomic.Int64  // tasks posted to the loop and not yet run (connect results, hand-overs, name answers)
}

// listenerCounters are one listener's counters, shared by the loops that
// accept for it. Bytes are added when a session ends (the loop counters are
// the live ones). A removed listener's counters outlive it in
// Server.retired (counters never go down), apart from the listener itself,
// whose settings and limiter table can then be collected.
type listenerCounters struct {
	name      string
	addr      netip.AddrPort // bound address
	edge      *edgeCounts    // refusals by rule; nil until the listener is added
	active    atomic.Int64   // live sessions (the per-listener cap)
	accepted  atomic.Uint64
	closed    [numReasons]atomic.Uint64
	bytesUp   atomic.Uint64
	bytesDown atomic.Uint64
}

// ListenerStats is one listener's share of Stats.
type ListenerStats struct {
	Addr      netip.AddrPort
	Active    int64
	Accepted  uint64
	Closed    map[string]uint64
	BytesUp   uint64 // of ended sessions
	BytesDown uint64
}

// LoopStats is one loop's share of Stats.
type LoopStats struct {
	Active   int64
	BufsHeld int64
	Queue    int64 // tasks waiting in the loop's queue
}

// Stats is a snapshot of the server's counters, safe to take from any
// goroutine at any time.
type Stats struct {
	Accepted      uint64
	Active        int64
	Closed        map[string]uint64 // by Reason.String()
	AcceptErrors  map[string]uint64 // emfile, enfile, enobufs, other
	AcceptBackoff uint64            // accept back-off episodes
	BytesUp       uint64            // client -> upstream
	BytesDown     uint64            // upstream -> client
	Pauses        uint64            // backpressure episodes begun: a direction stopped reading because its destination refused bytes
	Resumes       uint64            // episodes ended by draining; Pauses − Resumes = paused now + closed while paused
	BufsHeld      int64             // relay buffers held right now (each Config.BufferSize bytes)
	Spliced       uint64            // session directions that switched to splice(2) (bulk)
	Loops         []LoopStats
	Listeners     map[string]ListenerStats
}

// ClosedTotal sums Closed over all reasons.
func (s Stats) ClosedTotal() uint64 {
	var n uint64
	for _, v := range s.Closed {
		n += v
	}
	return n
}

func (s *Stats) add(c *counters) {
	s.Accepted += c.accepted.Load()
	a, b := c.active.Load(), c.bufsHeld.Load()
	s.Active += a
	s.BufsHeld += b
	for i := range c.closed {
		s.Closed[reasonNames[i]] += c.closed[i].Load()
	}
	for i := range c.acceptErrs {
		s.AcceptErrors[acceptErrNames[i]] += c.acceptErrs[i].Load()
	}
	s.AcceptBackoff += c.acceptPaused.Load()
	s.BytesUp += c.bytesUp.Load()
	s.BytesDown += c.bytesDown.Load()
	s.Pauses += c.pauses.Load()
	s.Resumes += c.resumes.Load()
	s.Spliced += c.spliced.Load()
	s.Loops = append(s.Loops, LoopStats{Active: a, BufsHeld: b, Queue: max(c.queued.Load(), 0)})
}
