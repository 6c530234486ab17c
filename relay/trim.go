//go:build linux

package relay

import (
	"runtime"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/relayd/relayd/connector"
)

// Trimming after a burst. Relay buffers come from a sync.Pool: a burst of
// connects, each holding its client's early bytes in a 32 KiB buffer while
// it waits for its upstream, leaves as many buffers in the pool as were in
// use at its peak — hundreds per process, megabytes — and a process that
// then only holds idle sessions allocates nothing, so no GC cycle comes to
// drop them (sync.Pool gives its buffers up over two cycles) and the heap
// that held them is never returned to the kernel. On a multi-process relayd
// holding 100,000 idle sessions that was a few hundred bytes per session.
//
// The same holds after a burst of closes (a load balancer draining, a
// mass disconnect): the ended sessions are garbage nobody collects.
//
// So a trimmer looks every Config.TrimAfter: when at least trimMinGets
// buffers were taken or sessions closed since the last trim and none in
// the last look (the burst is over), it runs two collections (the pool's
// two generations) and returns the freed memory to the kernel
// (debug.FreeOSMemory). Steady traffic never looks quiet, so it never
// pays; an idle process pays once per burst, a few milliseconds off the
// loops' goroutines.
const (
	DefaultTrimAfter = 5 * time.Second // Config.TrimAfter
	trimMinGets      = 64
)

// trimmer runs until stop is closed, looking every quiet.
func (s *Server) trimmer(stop <-chan struct{}, quiet time.Duration) {
	tk := time.NewTicker(quiet)
	defer tk.Stop()
	var st trimState
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		s.trimLook(&st)
	}
}

// trimState is what the trimmer remembers between looks: the activity
// count (buffers taken plus sessions closed) at the last look and at the
// last trim.
type trimState struct{ seen, trimmed uint64 }

// trimLook is one look: it trims when the activity stood still since the
// last look and at least trimMinGets happened since the last trim. It
// reports whether it trimmed.
func (s *Server) trimLook(st *trimState) bool {
	n := s.bufGets.Load() + s.closedTotal()
	quiet := n == st.seen
	st.seen = n
	if !quiet || n-st.trimmed < trimMinGets {
		return false
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s.shrinkTables()
	runtime.GC()
	debug.FreeOSMemory() // the second collection, and the pages back to the kernel
	runtime.ReadMemStats(&after)
	st.trimmed = n
	s.trims.Add(1)
	s.cfg.Zap.Debug("memory trimmed after a burst", zap.Uint64("activity", n),
		zap.Uint64("heap_before", before.HeapAlloc), zap.Uint64("heap_after", after.HeapAlloc),
		zap.Uint64("released", after.HeapReleased-min(before.HeapReleased, after.HeapReleased)))
	return true
}

// shrinkTables has every loop, and the connector if it can, give back what
// its tables grew to at the peak (loop.shrink), and waits until they have:
// the collection that follows then frees the old arrays. A loop that has
// stopped is skipped.
func (s *Server) shrinkTables() {
	for _, l := range s.loops {
		done := make(chan struct{})
		if l.ev.Post(func(any) { l.shrink(); close(done) }, nil) != nil {
			continue
		}
		select {
		case <-done:
		case <-l.ev.Done(): // accepted posts run before Run returns: done is closed too
			<-done
		}
	}
	if sh, ok := s.cfg.Dialer.(interface{ Shrink() }); ok {
		sh.Shrink()
	}
}

// Loop tables kept at their smallest across a trim.
const (
	minFDTable  = 64 // entries of loop.fds
	keepFreeReq = 64 // connect requests kept on loop.reqs
)

// shrink reallocates the loop's fd table to the smallest power of two
// (at least minFDTable) above its highest fd in use, if that halves it at
// least, and drops the free connect requests beyond keepFreeReq. The fd
// table grows to the highest fd number the process reached — at 7,000
// sessions a worker that is 16,384 entries, 384 KiB per loop — and would
// otherwise keep that size after every session is gone. Loop goroutine only.
func (l *loop) shrink() {
	top := len(l.fds) - 1
	for top >= 0 && l.fds[top] == (fdRef{}) {
		top--
	}
	n := minFDTable
	for n < top+1 {
		n *= 2
	}
	if n <= len(l.fds)/2 {
		fds := make([]fdRef, n)
		copy(fds, l.fds[:n])
		l.fds = fds
	}
	if len(l.reqs) > keepFreeReq || cap(l.reqs) > 2*keepFreeReq {
		keep := make([]*connector.Request, min(len(l.reqs), keepFreeReq), keepFreeReq)
		copy(keep, l.reqs)
		l.reqs = keep
	}
}

// closedTotal is the number of sessions the loops have closed, all reasons.
func (s *Server) closedTotal() uint64 {
	var n uint64
	for _, l := range s.loops {
		for i := range l.st.closed {
			n += l.st.closed[i].Load()
		}
	}
	return n
}
