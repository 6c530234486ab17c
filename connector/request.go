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
	Addrs   []netip.AddrPort // candidates in order; tried from Addrs[0], wrapping around if Tries > len(Addrs)
	Tries   int              // attempts in total (1 = no failover); 0 = len(Addrs)
	Timeout time.Duration    // per attempt; 0 = the pool's ConnectTimeout
	Handler Handler
	Cookie  uint64 // opaque to the connector (the relay's session generation), returned untouched

	// Results, valid in Handler.Connected.
	FD       int            // connected non-blocking, close-on-exec socket, or -1. Ownership passes to the handler.
	Addr     netip.AddrPort // the address that answered, or the last one tried (zero if none was)
	Err      error          // nil, ErrTimeout, ErrCanceled, ErrClosed, or the errno as *os.SyscallError
	Attempts int            // connect attempts made
	Latency  time.Duration  // from Submit to completion

	// state is touched by goroutines other than the owning worker: phase
	// (idle/queued/inflight/done) plus the canceled bit.
	state atomic.Uint32
	// slot is the worker slot while in flight (nil otherwise), written by
	// the worker; atomic because a canceled request may be reused and
	// started by another worker while the first still checks it.
	slot atomic.Pointer[slot]

	// Set by Submit before the request is published to the worker.
	w     *worker
	start time.Time

	// Guarded by w.mu: links in the worker's FIFO (prev, next) or, once
	// canceled while queued, in its cancel list (next). After the worker has
	// taken the request, next links the batch it is starting (worker only).
	prev, next *Request
	inQueue    bool
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
	r.Addrs, r.Tries, r.Timeout, r.Handler, r.Cookie = nil, 0, 0, nil, 0
	r.FD, r.Addr, r.Err, r.Attempts, r.Latency = -1, netip.AddrPort{}, nil, 0, 0
	r.w, r.start, r.prev, r.next, r.inQueue = nil, time.Time{}, nil, nil, false
	r.state.Store(phaseIdle)
	r.slot.Store(nil)
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
	w := r.w // written by Submit before the state was published
	w.mu.Lock()
	if r.inQueue {
		// Still queued: take it out now so it neither waits behind
		// hanging connects nor occupies a queue place; the worker
		// completes it, since the handler runs on a worker goroutine.
		w.unlinkLocked(r)
		w.p.queued.Add(-1)
		r.next, w.cancels = w.cancels, r
	} else {
		// Taken by the worker (or just completed): it finds the slot.
		w.inflightCancels = append(w.inflightCancels, r)
	}
	post := !w.posted && !w.closed
	w.posted = w.posted || post
	w.mu.Unlock()
	if post {
		w.st.wakeups.Add(1)
		_ = w.loop.PostFunc(w.wakeF, nil) // fails only once the loop has stopped: the final drain completes r
	}
}
