//go:build linux

package relay

// Hooks for the external tests of this package (compiled only with them).

// SetSpliceAfter sets how many full reads in a row switch a direction to
// splice(2) (0: its first read) and returns the previous value. Tests that
// call it must not run in parallel.
func SetSpliceAfter(n uint8) (prev uint8) {
	prev, spliceAfter = spliceAfter, n
	return prev
}

// SpliceState reports, over the live sessions of every loop, how many
// directions splice right now and the most bytes any of them holds in its
// pipe, and how many pipes the loops have open (lent or free).
func (s *Server) SpliceState() (spliced, maxPending, pipesOpen int) {
	type res struct{ n, max, open int }
	out := make(chan res, len(s.loops))
	s.onLoops(func(l *loop) {
		var r res
		r.open = l.pipes.open
		for x := l.sessions.first(); x != nil && x != &l.sessions.head; x = x.next {
			for _, d := range []*dir{&x.up, &x.down} {
				if d.spliced {
					r.n++
					r.max = max(r.max, d.pending())
				}
			}
		}
		out <- r
	})
	close(out)
	for r := range out {
		spliced += r.n
		maxPending = max(maxPending, r.max)
		pipesOpen += r.open
	}
	return spliced, maxPending, pipesOpen
}
