//go:build linux

package relay

import (
	"net/netip"
	"sync/atomic"
)

// upstreams is one listener's immutable upstream set. Every rotation of the
// list is precomputed, so choosing the failover order of a session is an
// index, not an allocation.
type upstreams struct {
	rot       [][]netip.AddrPort // rot[i] starts at upstream i, then wraps
	active    []atomic.Int64     // sessions connected per upstream (least-conn)
	leastConn bool
	tries     int
	rr        atomic.Uint64
}

func newUpstreams(addrs []netip.AddrPort, leastConn bool, tries int) *upstreams {
	n := len(addrs)
	u := &upstreams{rot: make([][]netip.AddrPort, n), active: make([]atomic.Int64, n), leastConn: leastConn, tries: tries}
	for i := range n {
		r := make([]netip.AddrPort, 0, n)
		r = append(r, addrs[i:]...)
		r = append(r, addrs[:i]...)
		u.rot[i] = r
	}
	if u.tries <= 0 {
		u.tries = n // one attempt per upstream
	}
	// More tries than upstreams wrap around the list (the connector's
	// Request.Tries does): retries: 3 with one upstream reconnects to it
	// three more times rather than silently not at all.
	return u
}

// pick returns the failover order for a new session.
func (u *upstreams) pick() []netip.AddrPort {
	n := len(u.rot)
	if n == 1 {
		return u.rot[0]
	}
	if u.leastConn {
		start := int(u.rr.Add(1) % uint64(n)) // ties are broken round-robin
		best, bestN := start, u.active[start].Load()
		for k := 1; k < n; k++ {
			i := (start + k) % n
			if v := u.active[i].Load(); v < bestN {
				best, bestN = i, v
			}
		}
		return u.rot[best]
	}
	return u.rot[int((u.rr.Add(1)-1)%uint64(n))]
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
