//go:build linux

package connector

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// Handler receives the result of a request.
type Handler interface {
	// Connected is called exactly once per accepted Submit, on a worker
	// goroutine, after the connector has let go of r and r.FD: from here on
	// the connector never touches either again. It must not block (the relay
	// posts r to its own loop and returns).
	Connected(r *Request)
}

// Request is one upstream connect. The caller owns the memory and may reuse
// it (or assign a fresh composite literal over it) after Connected; between
// Submit and Connected it must not write to it.
type Request struct {
	// Set by the caller.
	Addrs []netip.AddrPort // candidates in order, when Upstreams is empty; tried from Addrs[0], wrapping around if Tries > len(Addrs)
	// Upstreams are the candidates as registered upstreams (Pool.SetUpstreams),
	// in the caller's failover order: each attempt waits in its upstream's
	// queue for a slot under that upstream's limit, and an upstream marked
	// down is skipped. When set, Addrs is ignored.
	Upstreams []*Upstream
	Tries     int           // attempts in total (1 = no failover); 0 = the number of candidates
	Timeout   time.Duration // per attempt, its wait for a slot included; 0 = the pool's ConnectTimeout
	Handler   Handler
	Cookie    uint64 // opaque to the connector (the relay's session generation), returned untouched
	// Source, if valid, is the local address to connect from (one of the
	// destination's family; otherwise the kernel picks).
	Source netip.Addr

	// Results, valid in Handler.Connected.
	FD       int            // connected non-blocking, close-on-exec socket, or -1. Ownership passes to the handler.
	Addr     netip.AddrPort // the address that answered, or the last one tried (zero if none was)
	Upstream *Upstream      // the upstream of Addr when Upstreams was set
	Err      error          // nil, ErrTimeout, ErrCanceled, ErrClosed, ErrUpstreamsDown, or the errno as *os.SyscallError
	Attempts int            // connect attempts made (a re-sent SYN of a late attempt not included)
	Latency  time.Duration  // from Submit to completion

	// state is touched by goroutines other than the owning worker: phase
	// (idle/queued/inflight/done) plus the canceled bit.
	state atomic.Uint32

	p *Pool // set by Submit before the state is published

	// Guarded by the pool's mu.
	start    time.Time // Submit
	enq      time.Time // this attempt asked for a slot: its deadline is enq + timeout
	attStart time.Time // this attempt's dial
	ups      *Upstream // the upstream this attempt waits for or runs against
	idx      int       // next candidate index
	tried    int       // attempts consumed (dials and queue timeouts)
	tries    int       // Tries with the default applied
	timeout  time.Duration
	lastErr  error
	w        *worker  // the worker running the attempt (in flight only)
	s        *slot    // its slot (in flight only)
	prev     *Request // links in an upstream's FIFO, or (next) the cancel list
	next     *Request
	inQueue  bool
	resend   bool  // the next dial re-sends a late attempt's SYN: not a new attempt
	resends  uint8 // lost SYNs re-sent for this request: each doubles its late threshold (lateAfter)
}

const (
	phaseIdle uint32 = iota
	phaseQueued
	phaseInflight
	phaseDone
	phaseMask   uint32 = 3
	canceledBit uint32 = 4
)

// Reset clears r for reuse by another Submit; a caller may keep a free list
// of requests. Only after Handler.Connected has run for it (the connector
// never touches r after that), never while it is queued or in flight.
func (r *Request) Reset() {
	r.Addrs, r.Upstreams, r.Tries, r.Timeout, r.Handler, r.Cookie, r.Source = nil, nil, 0, 0, nil, 0, netip.Addr{}
	r.FD, r.Addr, r.Upstream, r.Err, r.Attempts, r.Latency = -1, netip.AddrPort{}, nil, nil, 0, 0
	r.start, r.enq, r.attStart, r.ups, r.idx, r.tried, r.tries, r.timeout, r.lastErr = time.Time{}, time.Time{}, time.Time{}, nil, 0, 0, 0, 0, nil
	r.p, r.w, r.s, r.prev, r.next, r.inQueue, r.resends = nil, nil, nil, nil, nil, false, 0
	r.state.Store(phaseIdle)
}

// Cancel tells the connector the client went away. If r is still queued it
// completes with ErrCanceled without connecting; if a connect is in flight the
// result is ErrCanceled and the connector closes any socket. Connected is
// still called exactly once. Cancel after completion (or before Submit) does
// nothing, so the handler must still check whether it wants a result.
//
// Safe from any goroutine, concurrently with the connector's work on r. It
// must not race with a later Submit of the same r: the caller reuses a
// request only after Connected, and cancels from the goroutine that submits.
func (r *Request) Cancel() {
	for {
		st := r.state.Load()
		if ph := st & phaseMask; (ph != phaseQueued && ph != phaseInflight) || st&canceledBit != 0 {
			return
		}
		if r.state.CompareAndSwap(st, st|canceledBit) {
			break
		}
	}
	r.p.cancel(r) // p is written by Submit before the state is published
}
