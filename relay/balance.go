//go:build linux

package relay

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/relayd/relayd/connector"
)

// MaxWeight is the largest upstream weight.
const MaxWeight = 256

// upstreams is one listener's immutable upstream set. Every rotation of the
// list is precomputed, so choosing the failover order of a session is an
// index, not an allocation.
type upstreams struct {
	rot       [][]netip.AddrPort      // rot[i] starts at upstream i, then wraps
	urot      [][]*connector.Upstream // the same as registered upstreams; nil rows without a registry
	active    []atomic.Int64          // sessions connected per upstream (least-conn)
	weight    []int64
	seq       []int // smooth weighted round-robin order of upstream indexes; nil when all weights are equal
	leastConn bool
	tries     int
	rr        atomic.Uint64
}

// newUpstreams builds the set; ups are the connector's upstreams in the
// same order, or nil.
func newUpstreams(addrs []netip.AddrPort, ups []*connector.Upstream, weights []int, leastConn bool, tries int) *upstreams {
	n := len(addrs)
	u := &upstreams{rot: make([][]netip.AddrPort, n), urot: make([][]*connector.Upstream, n),
		active: make([]atomic.Int64, n), weight: make([]int64, n), leastConn: leastConn, tries: tries}
	for i := range n {
		r := make([]netip.AddrPort, 0, n)
		r = append(r, addrs[i:]...)
		r = append(r, addrs[:i]...)
		u.rot[i] = r
		if len(ups) == n {
			ur := make([]*connector.Upstream, 0, n)
			ur = append(ur, ups[i:]...)
			ur = append(ur, ups[:i]...)
			u.urot[i] = ur
		}
		u.weight[i] = 1
		if weights != nil {
			u.weight[i] = int64(weights[i])
		}
	}
	u.seq = smoothWRR(u.weight)
	if u.tries <= 0 {
		u.tries = n // one attempt per upstream
	}
	// More tries than upstreams wrap around the list (the connector's
	// Request.Tries does): retries: 3 with one upstream reconnects to it
	// three more times rather than silently not at all.
	return u
}

// smoothWRR returns one cycle of nginx's smooth weighted round-robin over
// weights (each upstream i appears weights[i] times, spread out rather than
// in runs), or nil when every weight is the same (plain round-robin).
func smoothWRR(weights []int64) []int {
	var total int64
	same := true
	for _, w := range weights {
		total += w
		same = same && w == weights[0]
	}
	if same {
		return nil
	}
	cur := make([]int64, len(weights))
	seq := make([]int, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			cur[i] += w
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq = append(seq, best)
	}
	return seq
}

// pick returns the index of the rotation (rot, urot) a new session tries
// in order. The connector skips upstreams that are marked down.
func (u *upstreams) pick() int {
	n := len(u.rot)
	if n == 1 {
		return 0
	}
	if u.leastConn {
		// Least sessions per weight: a < b ⇔ active_a·w_b < active_b·w_a.
		start := int(u.rr.Add(1) % uint64(n)) // ties are broken round-robin
		best, bestN := start, u.active[start].Load()
		for k := 1; k < n; k++ {
			i := (start + k) % n
			if v := u.active[i].Load(); v*u.weight[best] < bestN*u.weight[i] {
				best, bestN = i, v
			}
		}
		return best
	}
	k := u.rr.Add(1) - 1
	if u.seq != nil {
		return u.seq[k%uint64(len(u.seq))]
	}
	return int(k % uint64(n))
}

// index returns the position of ap in the set, or -1.
func (u *upstreams) index(ap netip.AddrPort) int {
	for i, r := range u.rot {
		if r[0] == ap {
			return i
		}
	}
	return -1
}

// register builds a listener's upstream set, registering its upstreams
// with the connector when the Dialer keeps per-upstream state. A listener
// in a mode without upstreams registers an empty list (a mode change on
// reload retires the old ones).
func (s *Server) register(lc *ListenerConfig) (*upstreams, error) {
	var ups []*connector.Upstream
	if reg, ok := s.cfg.Dialer.(UpstreamRegistry); ok {
		var cfgs []connector.UpstreamConfig
		if lc.Mode == "" || lc.Mode == ModeForward {
			cfgs = make([]connector.UpstreamConfig, len(lc.Upstreams))
			for i, a := range lc.Upstreams {
				cfgs[i] = connector.UpstreamConfig{Addr: a, Check: lc.Check}
			}
		}
		var err error
		if ups, err = reg.SetUpstreams(lc.Name, cfgs); err != nil {
			return nil, fmt.Errorf("relay: listener %q: %w", lc.Name, err)
		}
	}
	return newUpstreams(lc.Upstreams, ups, lc.Weights, lc.LeastConn, lc.Tries), nil
}

// unregister retires a listener's upstreams in the connector.
func (s *Server) unregister(name string) {
	if reg, ok := s.cfg.Dialer.(UpstreamRegistry); ok {
		_, _ = reg.SetUpstreams(name, nil) // an empty list cannot fail
	}
}

// UpstreamSessions returns, for each listener, the sessions connected to
// each of its upstreams now. A session counts in the upstream set it began
// with: after a reload that changed a listener's set, the sessions of the
// old set are no longer counted here.
func (s *Server) UpstreamSessions() map[string]map[netip.AddrPort]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[netip.AddrPort]int64, len(s.listeners))
	for _, ln := range s.listeners {
		ups := ln.ups.Load()
		if ups == nil {
			continue
		}
		out[ln.cfg.Name] = ups.sessions()
		if g := ln.groups.Load(); g != nil { // route groups, by their connector names
			for i, n := range g.names {
				out[n] = g.ups[i].sessions()
			}
		}
	}
	return out
}

// sessions counts the sessions connected to each upstream of the set.
func (u *upstreams) sessions() map[netip.AddrPort]int64 {
	m := make(map[netip.AddrPort]int64, len(u.rot))
	for i, r := range u.rot {
		m[r[0]] += u.active[i].Load()
	}
	return m
}
