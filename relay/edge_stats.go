//go:build linux

package relay

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/edge/httpconnect"
	"github.com/relayd/relayd/edge/policy"
	"github.com/relayd/relayd/edge/route"
)

// edgeState is what validate derives from a ListenerConfig's edge settings.
// It belongs to one ListenerConfig (a reload makes a new one); the counters
// it points to belong to the listener and carry over reloads.
type edgeState struct {
	active  bool // any edge setting: sessions take the edge path
	httpCfg httpconnect.Config
	routes  *route.Table // compiled ListenerConfig.Routes; nil without routes
	*edgeCounts
}

// edgeCounts are a listener's refusal counters. They are on the rare path
// (a refusal), so a mutex-guarded map is fine; accepted sessions touch none.
type edgeCounts struct {
	mu       sync.Mutex // guards denied, rejected
	denied   map[string]uint64
	rejected map[string]uint64
	routed   map[string]*atomic.Uint64 // sessions by route (route.Default: none matched); routeCounter

	lastSweep atomic.Int64 // unix nanos of the last SourceLimiter.Sweep
}

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

// maybeSweep lets one session every sweepEvery/NumShards drop the idle
// sources of one shard of the limiter, so the whole table is swept every
// sweepEvery without a relay loop ever holding more than one shard lock
// over one shard's entries (a full sweep at 65,536 sources held the other
// loops' Acquire calls for milliseconds).
func (e *edgeCounts) maybeSweep(lim *policy.SourceLimiter, now time.Time) {
	last := e.lastSweep.Load()
	if now.UnixNano()-last < int64(sweepEvery/policy.NumShards) || !e.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	lim.SweepShards(1, now)
}

// EdgeStats is one listener's refusal counters by rule.
type EdgeStats struct {
	PolicyDenied   map[string]uint64 // destination refusals by policy rule ("loopback", "self", "allow:..." ...)
	SourceRejected map[string]uint64 // ACL and per-source limit refusals by rule ("acl-deny", "source-rate" ...)
	Routed         map[string]uint64 // sessions by route; "default": matched none (routes only)
}

// EdgeStats returns each listener's edge counters (by listener name). The
// close reasons (rejected_acl, policy_denied, auth_failed ...) are in Stats.
func (s *Server) EdgeStats() map[string]EdgeStats {
	s.mu.Lock()
	lcs := s.counters()
	s.mu.Unlock()
	out := make(map[string]EdgeStats, len(lcs))
	for _, lc := range lcs {
		e := lc.edge
		if e == nil {
			continue
		}
		es, ok := out[lc.name]
		if !ok {
			es = EdgeStats{PolicyDenied: map[string]uint64{}, SourceRejected: map[string]uint64{}, Routed: map[string]uint64{}}
		}
		e.mu.Lock()
		for k, v := range e.denied {
			es.PolicyDenied[k] += v
		}
		for k, v := range e.rejected {
			es.SourceRejected[k] += v
		}
		for k, v := range e.routed {
			es.Routed[k] += v.Load()
		}
		e.mu.Unlock()
		out[lc.name] = es
	}
	return out
}
