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
// without blocking, fed by per-upstream queues (sched.go). Create it with
// New; all methods are safe for concurrent use.
type Pool struct {
	cfg     Config // with defaults applied
	workers []*worker
	wg      sync.WaitGroup

	closed       atomic.Bool
	submits      atomic.Uint64
	rejected     atomic.Uint64 // ErrQueueFull, global or per upstream
	downRejected atomic.Uint64 // ErrUpstreamsDown at Submit
	queuedN      atomic.Int64  // copy of queued for Stats

	closeOnce sync.Once
	errMu     sync.Mutex
	runErr    error      // first error a loop ended with, reported by Close
	dead      chan error // the first such error, for the owner (Dead)

	// mu guards the scheduler: every upstream's queue, counts, pacer and
	// health, the ready ring, the cancel list and the workers' posted, full
	// and inflightCancels fields. It is held for pointer moves and a few
	// arithmetic steps, never across a syscall other than the eventfd write
	// some paths post after unlocking.
	mu         sync.Mutex
	isClosed   bool
	queued     int
	ups        map[UpstreamKey]*Upstream
	byListener map[string][]*Upstream
	all        []*Upstream // registered upstreams and direct, for the queue sweep
	direct     *Upstream   // requests by Addrs
	ring       *Upstream   // ready ring: upstreams with a queued request and room under their limit
	cancels    *Request    // canceled while queued, for any worker to complete
	paced      []*Upstream // waiting for their rate (u.paced)
	sweeping   bool        // the queue sweep timer is armed (or asked for) on worker 0
	wakeRR     int
	checkRR    int
}

// New validates cfg and starts the worker goroutines.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg.withDefaults(), dead: make(chan error, 1),
		ups: map[UpstreamKey]*Upstream{}, byListener: map[string][]*Upstream{}}
	p.direct = &Upstream{p: p, direct: true, pace: newPacer(false, 1<<30), health: health{up: true}}
	p.direct.up.Store(true)
	p.all = append(p.all, p.direct)
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

// Submit hands r to the connector. It never blocks and never calls the
// handler itself: nil means r.Handler.Connected will be called exactly once,
// later, on a worker goroutine. ErrQueueFull means the pool's queue or the
// first upstream's queue is at its cap, ErrUpstreamsDown that every
// candidate is marked down (reject the client now, in both cases);
// ErrClosed, that Close was called.
func (p *Pool) Submit(r *Request) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if err := p.checkRequest(r); err != nil {
		return err
	}
	now := time.Now()
	r.p = p
	r.start, r.enq = now, now
	r.FD, r.Err, r.Attempts, r.Latency, r.Addr, r.Upstream = -1, nil, 0, 0, netip.AddrPort{}, nil
	r.idx, r.tried, r.lastErr, r.w, r.s, r.resend, r.resends = 0, 0, nil, nil, nil, false, 0
	r.tries = r.Tries
	if r.tries <= 0 {
		r.tries = max(len(r.Upstreams), len(r.Addrs))
	}
	r.timeout = r.Timeout
	if r.timeout <= 0 {
		r.timeout = p.cfg.ConnectTimeout
	}
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.queued >= p.cfg.Queue {
		p.mu.Unlock()
		p.rejected.Add(1)
		return ErrQueueFull
	}
	u := p.routeLocked(r, now)
	if u == nil {
		p.mu.Unlock()
		p.downRejected.Add(1)
		return ErrUpstreamsDown
	}
	if !u.direct && u.queued >= p.cfg.UpstreamQueue {
		u.st.rejected++
		p.mu.Unlock()
		p.rejected.Add(1)
		return ErrQueueFull
	}
	r.state.Store(phaseQueued) // under mu: Cancel sees state and inQueue agree
	wake := p.enqueueLocked(u, r, false)
	p.mu.Unlock()
	p.submits.Add(1)
	p.post(wake)
	return nil
}

func (p *Pool) checkRequest(r *Request) error {
	if (len(r.Addrs) == 0 && len(r.Upstreams) == 0) || r.Handler == nil {
		return fmt.Errorf("%w: needs Addrs or Upstreams, and Handler", ErrInvalidRequest)
	}
	if len(r.Upstreams) > 0 {
		for _, u := range r.Upstreams {
			if u == nil || u.p != p || u.direct {
				return fmt.Errorf("%w: an upstream of another pool, or nil", ErrInvalidRequest)
			}
		}
	} else {
		for _, a := range r.Addrs {
			if !a.Addr().IsValid() {
				return fmt.Errorf("%w: invalid address %v", ErrInvalidRequest, a)
			}
		}
	}
	if ph := r.state.Load() & phaseMask; ph == phaseQueued || ph == phaseInflight {
		return fmt.Errorf("%w: already submitted", ErrInvalidRequest)
	}
	return nil
}

// post wakes the workers whose bits are set in mask (after mu is released).
func (p *Pool) post(mask uint64) {
	for i := 0; mask != 0; i++ {
		if mask&1 != 0 {
			w := p.workers[i]
			w.st.wakeups.Add(1)
			_ = w.loop.PostFunc(w.wakeF, nil) // fails only once the loop stopped: its drain completes what is left
		}
		mask >>= 1
	}
}

// SetUpstreams registers the upstreams of one listener, in order, and
// returns them: an address the listener already had keeps its Upstream
// (queue, limit and health carry over a reload); one it no longer has is
// retired: its active check stops and it leaves UpstreamStats, but a
// request that still names it (a session that took the listener's old set
// just before the reload) is served as before. An empty list retires them
// all.
func (p *Pool) SetUpstreams(listener string, cfgs []UpstreamConfig) ([]*Upstream, error) {
	for i, c := range cfgs {
		if !c.Addr.IsValid() || c.Addr.Port() == 0 {
			return nil, fmt.Errorf("%w: upstream %d of %q: invalid address %v", ErrInvalidRequest, i, listener, c.Addr)
		}
		if err := c.Check.Validate("check"); err != nil {
			return nil, err
		}
	}
	var ops []*checker
	p.mu.Lock()
	keep := make(map[UpstreamKey]bool, len(cfgs))
	out := make([]*Upstream, 0, len(cfgs))
	for _, c := range cfgs {
		key := UpstreamKey{Listener: listener, Addr: c.Addr}
		c.Check = c.Check.withDefaults(p.cfg.ConnectTimeout)
		u := p.ups[key]
		if u == nil {
			u = &Upstream{p: p, key: key, health: health{up: true}}
			u.pace = newPacer(p.cfg.Pacing == PacingAdaptive, p.cfg.UpstreamMaxInflight)
			u.up.Store(true)
			u.listed = true
			p.ups[key] = u
			p.all = append(p.all, u)
		}
		if u.cfg.Check != c.Check || (c.Check.Interval > 0) != (u.check != nil) {
			if u.check != nil {
				u.check.stop = true
				ops = append(ops, u.check)
				u.check = nil
			}
			if c.Check.Interval > 0 {
				u.check = &checker{u: u, w: p.workers[p.checkRR%len(p.workers)], cfg: c.Check}
				p.checkRR++
				ops = append(ops, u.check)
			}
		}
		u.cfg = c
		keep[key] = true
		out = append(out, u)
	}
	for _, u := range p.byListener[listener] {
		if keep[u.key] {
			continue
		}
		u.retired = true
		delete(p.ups, u.key)
		if u.check != nil {
			u.check.stop = true
			ops = append(ops, u.check)
			u.check = nil
		}
		if u.head == nil && u.inflight == 0 {
			p.forgetLocked(u)
		}
	}
	if len(out) == 0 {
		delete(p.byListener, listener)
	} else {
		p.byListener[listener] = out
	}
	closed := p.isClosed
	p.mu.Unlock()
	if !closed {
		for _, c := range ops {
			_ = c.w.loop.PostFunc(c.w.checkOpF, c) // a stopped loop drains its checks itself
		}
	}
	return out, nil
}

// forgetLocked drops a retired, empty upstream from the sweep list
// (enqueueLocked lists it again should a request still name it).
func (p *Pool) forgetLocked(u *Upstream) {
	u.listed = false
	for i, v := range p.all {
		if v == u {
			p.all = append(p.all[:i], p.all[i+1:]...)
			return
		}
	}
}

// Shrink has every worker give back what its fd table grew to at a peak
// (worker.shrink) and returns once they have; a stopped worker is
// skipped. relay's trimmer calls it after a burst, before its collection.
func (p *Pool) Shrink() {
	for _, w := range p.workers {
		done := make(chan struct{})
		if w.loop.Post(func(any) { w.shrink(); close(done) }, nil) != nil {
			continue
		}
		<-done // an accepted post runs, also when the loop is stopping
	}
}

// Close stops accepting Submits, completes every request not yet completed
// with ErrClosed (ErrCanceled if it was canceled), stops the workers and
// waits for their goroutines. Safe to call more than once; it returns the
// error a worker loop failed with, if any.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.mu.Lock()
		p.isClosed = true
		p.mu.Unlock()
		for _, w := range p.workers {
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
		Queued:            int(p.queuedN.Load()),
		Submitted:         p.submits.Load(),
		QueueRejected:     p.rejected.Load(),
		DownRejected:      p.downRejected.Load(),
		Inflight:          make([]int, 0, len(p.workers)),
		InflightHighWater: make([]int, 0, len(p.workers)),
	}
	for _, w := range p.workers {
		w.st.addTo(&s)
	}
	return s
}

// UpstreamStats returns a snapshot of every registered upstream, by
// listener in registration order.
func (p *Pool) UpstreamStats() []UpstreamStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []UpstreamStats
	for _, u := range p.all {
		if !u.direct && !u.retired {
			out = append(out, u.statsLocked())
		}
	}
	return out
}
