//go:build linux

package connector

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Pool is the connector stage: Workers event loops that connect sockets
// without blocking. Create it with New; all methods are safe for concurrent
// use.
type Pool struct {
	cfg     Config // with defaults applied
	workers []*worker
	wg      sync.WaitGroup

	queued   atomic.Int64 // requests in the workers' FIFOs (the Queue cap)
	rr       atomic.Uint32
	closed   atomic.Bool
	submits  atomic.Uint64
	rejected atomic.Uint64

	closeOnce sync.Once
	errMu     sync.Mutex
	runErr    error      // first error a loop ended with, reported by Close
	dead      chan error // the first such error, for the owner (Dead)
}

// New validates cfg and starts the worker goroutines.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg.withDefaults(), dead: make(chan error, 1)}
	for i := 0; i < p.cfg.Workers; i++ {
		w, err := newWorker(p, i)
		if err != nil {
			for _, w := range p.workers {
				w.loop.Stop()
				_ = w.loop.Run() // returns at once: closes its poller and tick fd
			}
			return nil, fmt.Errorf("connector: worker %d: %w", i, err)
		}
		p.workers = append(p.workers, w)
	}
	p.wg.Add(len(p.workers))
	for _, w := range p.workers {
		go func() {
			defer p.wg.Done()
			if err := w.run(); err != nil {
				err = fmt.Errorf("connector: worker %d: %w", w.id, err)
				p.errMu.Lock()
				if p.runErr == nil {
					p.runErr = err
				}
				p.errMu.Unlock()
				select {
				case p.dead <- err:
				default:
				}
			}
		}()
	}
	return p, nil
}

// Dead delivers the error of the first worker whose loop stopped on its own
// (its poller failed): its requests are completed with ErrClosed, and the
// owner should treat it as fatal.
func (p *Pool) Dead() <-chan error { return p.dead }

// Config returns the configuration in effect (defaults applied).
func (p *Pool) Config() Config { return p.cfg }

// Submit hands r to a worker. It never blocks and never calls the handler
// itself: nil means r.Handler.Connected will be called exactly once, later,
// on a worker goroutine. ErrQueueFull means the queue is at its cap (reject
// the client now); ErrClosed, that Close was called.
func (p *Pool) Submit(r *Request) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if len(r.Addrs) == 0 || r.Handler == nil {
		return fmt.Errorf("%w: needs Addrs and Handler", ErrInvalidRequest)
	}
	for _, a := range r.Addrs {
		if !a.Addr().IsValid() {
			return fmt.Errorf("%w: invalid address %v", ErrInvalidRequest, a)
		}
	}
	if ph := r.state.Load() & phaseMask; ph == phaseQueued || ph == phaseInflight {
		return fmt.Errorf("%w: already submitted", ErrInvalidRequest)
	}
	if p.queued.Add(1) > int64(p.cfg.Queue) {
		p.queued.Add(-1)
		p.rejected.Add(1)
		return ErrQueueFull
	}
	w := p.pick()
	r.w = w
	r.start = time.Now()
	r.FD, r.Err, r.Attempts, r.Latency = -1, nil, 0, 0
	r.Addr = netip.AddrPort{}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		p.queued.Add(-1)
		return ErrClosed
	}
	r.state.Store(phaseQueued) // under mu: Cancel sees state and inQueue agree
	w.pushLocked(r)
	w.load.Add(1)
	// Wake the worker only if it will not look at the FIFO by itself: no
	// wake task pending and a free slot. Under load the worker is full and
	// pulls as connects finish, so Submit costs no syscall.
	post := !w.posted && !w.full
	w.posted = w.posted || post
	w.mu.Unlock()
	p.submits.Add(1)
	if post {
		w.st.wakeups.Add(1)
		_ = w.loop.PostFunc(w.wakeF, nil) // fails only once the loop stopped: its drain completes r
	}
	return nil
}

// pick returns the least-loaded worker, starting the comparison at a
// rotating index so that ties spread round-robin.
func (p *Pool) pick() *worker {
	n := len(p.workers)
	if n == 1 {
		return p.workers[0]
	}
	i := int(p.rr.Add(1) % uint32(n))
	best := p.workers[i]
	bl := best.load.Load()
	for k := 1; k < n; k++ {
		w := p.workers[(i+k)%n]
		if l := w.load.Load(); l < bl {
			best, bl = w, l
		}
	}
	return best
}

// Close stops accepting Submits, completes every request not yet completed
// with ErrClosed (ErrCanceled if it was canceled), stops the workers and
// waits for their goroutines. Safe to call more than once; it returns the
// error a worker loop failed with, if any.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		for _, w := range p.workers {
			w.mu.Lock()
			w.closed = true
			w.mu.Unlock()
			w.loop.Stop()
		}
	})
	p.wg.Wait()
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.runErr
}

// Stats returns a snapshot of the counters. Safe from any goroutine.
func (p *Pool) Stats() Stats {
	s := Stats{
		Queued:            int(p.queued.Load()),
		Submitted:         p.submits.Load(),
		QueueRejected:     p.rejected.Load(),
		Inflight:          make([]int, 0, len(p.workers)),
		InflightHighWater: make([]int, 0, len(p.workers)),
	}
	for _, w := range p.workers {
		w.st.addTo(&s)
		// load = queued + in flight on this worker; both move independently,
		// so clamp the difference of two reads at 0.
		s.QueuedPerWorker = append(s.QueuedPerWorker, max(int(w.load.Load())-s.Inflight[len(s.Inflight)-1], 0))
	}
	return s
}
