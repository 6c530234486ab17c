//go:build linux

package connector

import (
	"fmt"
	"time"
)

// The scheduler: which queued request gets the next free connect slot.
//
// Every request waits in the queue of the upstream its attempt is for (the
// pool's direct pseudo-upstream for requests by Addrs). An upstream with a
// queued request and fewer connects in flight than its limit is linked in
// the ready ring; a worker with a free slot takes the head request of the
// ring's first upstream and moves that upstream to the ring's tail, so the
// slots go round-robin over the upstreams that can use one, and an upstream
// at its limit (a slow or dead one) waits with its own queue while the
// others keep theirs moving. Everything here runs under p.mu.
//
// Invariants (under p.mu):
//   - r.inQueue ⇔ r is linked in r.ups's FIFO; then r.s == nil.
//   - r.s != nil ⇔ r holds a slot of worker r.w (its attempt is in flight or
//     about to be dialled from w.starts); r.ups.inflight counts it.
//   - u.ready ⇔ u is in the ring ⇔ u.head != nil && u.inflight < u.capLocked()
//     && !u.paced; u.paced ⇔ u is in p.paced, waiting for its rate.
//   - p.queued is the number of requests with inQueue set.

// routeLocked picks the upstream for r's next attempt: the first candidate
// from r.idx on that may be routed to now (up, or down with its trial due).
// nil means every candidate is down. A retired upstream (a reload removed
// it) still serves the requests that name it: a session that picked its
// candidates from the listener's old set just before the reload must not
// fail for it.
func (p *Pool) routeLocked(r *Request, now time.Time) *Upstream {
	n := len(r.Upstreams)
	if n == 0 {
		return p.direct
	}
	for k := 0; k < n; k++ {
		i := (r.idx + k) % n
		if u := r.Upstreams[i]; u.eligibleLocked(now) {
			r.idx = i + 1
			return u
		}
	}
	return nil
}

// enqueueLocked queues r for u (at the front for a re-sent SYN, which has
// waited already) and returns the workers to wake.
func (p *Pool) enqueueLocked(u *Upstream, r *Request, front bool) uint64 {
	r.ups, r.inQueue = u, true
	if !u.listed {
		u.listed = true
		p.all = append(p.all, u)
	}
	if front && u.head != nil {
		r.prev, r.next = nil, u.head
		u.head.prev = r
		u.head = r
	} else {
		r.prev, r.next = u.tail, nil
		if u.tail != nil {
			u.tail.next = r
		} else {
			u.head = r
		}
		u.tail = r
	}
	u.queued++
	p.queued++
	p.queuedN.Store(int64(p.queued))
	p.updateReadyLocked(u)
	var mask uint64
	if !p.sweeping {
		// Arm the queue sweep on worker 0: a queued request must time out
		// at its deadline even if no slot frees for it.
		p.sweeping = true
		w0 := p.workers[0]
		w0.armSweep = true
		if !w0.posted {
			w0.posted = true
			mask |= 1
		}
	}
	return mask | p.wakeLocked()
}

func (p *Pool) unlinkLocked(r *Request) {
	u := r.ups
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		u.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		u.tail = r.prev
	}
	r.prev, r.next, r.inQueue = nil, nil, false
	u.queued--
	p.queued--
	p.queuedN.Store(int64(p.queued))
}

// updateReadyLocked links or unlinks u in the ready ring per the invariant.
func (p *Pool) updateReadyLocked(u *Upstream) {
	want := u.head != nil && u.inflight < u.capLocked() && !u.paced
	switch {
	case want && !u.ready:
		u.ready = true
		if p.ring == nil {
			u.rprev, u.rnext = u, u
			p.ring = u
			return
		}
		tail := p.ring.rprev
		u.rprev, u.rnext = tail, p.ring
		tail.rnext = u
		p.ring.rprev = u
	case !want && u.ready:
		u.ready = false
		if u.rnext == u {
			p.ring = nil
		} else {
			u.rprev.rnext = u.rnext
			u.rnext.rprev = u.rprev
			if p.ring == u {
				p.ring = u.rnext
			}
		}
		u.rprev, u.rnext = nil, nil
	}
}

// wakeLocked returns a worker to wake if there is ready work that no worker
// will look at by itself: none that has a free slot has a wake pending.
func (p *Pool) wakeLocked() uint64 {
	if p.ring == nil {
		return 0
	}
	n := len(p.workers)
	pick := -1
	for k := 0; k < n; k++ {
		i := (p.wakeRR + k) % n
		w := p.workers[i]
		if w.full {
			continue
		}
		if w.posted {
			return 0
		}
		if pick < 0 {
			pick = i
		}
	}
	if pick < 0 {
		return 0 // every worker is full: each pulls as its slots free
	}
	p.wakeRR = pick + 1
	p.workers[pick].posted = true
	return 1 << uint(pick)
}

// pullLocked moves ready requests into w's free slots. The dials happen
// after mu is released (w.starts); requests whose deadline passed in the
// queue, or that were canceled, go to w.done instead.
func (p *Pool) pullLocked(w *worker, now time.Time) {
	for len(w.free) > 0 && p.ring != nil {
		u := p.ring
		if !u.direct && !u.pace.take(now) {
			// Its rate allows no start yet: out of the ring until a pace
			// timer (this worker's, armed by flush) finds it due.
			u.paced = true
			p.paced = append(p.paced, u)
			p.updateReadyLocked(u)
			w.armPace = true
			w.paceWait = min(w.paceWait, u.pace.wait(now))
			continue
		}
		r := u.head
		p.unlinkLocked(r)
		p.ring = u.rnext // u goes to the back of the ring: round-robin
		switch {
		case r.state.Load()&canceledBit != 0:
			w.finishLater(r, ErrCanceled)
		case !now.Before(r.enq.Add(r.timeout)):
			p.queueTimeoutLocked(w, r, now)
		default:
			s := w.takeSlot()
			s.r, s.fd, s.stage = r, -1, stageNone
			s.late = 0
			if !u.direct {
				s.late = u.pace.lateAfter(r.timeout, r.resends)
			}
			r.s, r.w = s, w
			u.inflight++
			w.starts = append(w.starts, s)
		}
		p.updateReadyLocked(u)
	}
	w.full = len(w.free) == 0
	if w.full {
		w.wake |= p.wakeLocked() // more ready work than this worker has slots
	}
}

// queueTimeoutLocked fails the attempt of r, taken from its queue after its
// deadline: counted as a queue timeout of the upstream, and as a failure
// for its passive health — which marks it down only if it has completed no
// connect for a whole connect timeout either: an upstream so slow (or so
// paced down by lost SYNs) that its queue times out and nothing gets
// through is down, one that still takes connects is only overloaded.
func (p *Pool) queueTimeoutLocked(w *worker, r *Request, now time.Time) {
	u := r.ups
	u.st.queueTimeouts++
	w.st.failures[ClassTimeout].Add(1)
	if !u.direct && u.health.up {
		p.unhealthyLocked(w, u, now, ClassTimeout)
	}
	r.lastErr = ErrTimeout
	r.tried++
	p.nextAttemptLocked(w, r, now)
}

// nextAttemptLocked queues r's next attempt, or completes r with its last
// error when no try is left, or with ErrUpstreamsDown when every remaining
// candidate is down and nothing was tried yet.
func (p *Pool) nextAttemptLocked(w *worker, r *Request, now time.Time) {
	switch {
	case r.state.Load()&canceledBit != 0:
		w.finishLater(r, ErrCanceled)
		return
	case p.isClosed:
		w.finishLater(r, ErrClosed)
		return
	case r.tried >= r.tries:
		w.finishLater(r, r.lastErr)
		return
	}
	u := p.routeLocked(r, now)
	if u == nil {
		err := r.lastErr
		if err == nil {
			err = ErrUpstreamsDown
		}
		w.finishLater(r, err)
		return
	}
	r.enq = now
	w.wake |= p.enqueueLocked(u, r, false)
}

// endAttemptLocked ends the attempt in slot s with fd (connected) or err,
// feeds the upstream's pacer and health, frees the slot and queues what
// follows: the completion, or the next attempt.
func (p *Pool) endAttemptLocked(w *worker, s *slot, fd int, err error, now time.Time) {
	r, u := s.r, s.r.ups
	w.releaseSlot(s)
	r.s, r.w = nil, nil
	limited := u.head != nil || u.inflight >= u.capLocked()
	u.inflight--
	lat := now.Sub(r.attStart)
	switch {
	case err == nil:
		if !u.direct {
			u.pace.success(lat, now, limited)
			p.healthyLocked(w, u, now)
		}
		u.st.connected++
		b := latencyBucket(lat)
		u.lat[b]++
		u.latCount++
		u.latSum += lat
		r.Upstream = u
		if u.direct {
			r.Upstream = nil
		}
		w.connectedLater(r, fd)
	case err == ErrCanceled:
		w.finishLater(r, ErrCanceled)
	default:
		c := Classify(err)
		u.st.failures[c]++
		w.st.failures[c].Add(1)
		if !u.direct && passiveFailure(c) {
			u.pace.congestion(r.attStart, now)
			p.unhealthyLocked(w, u, now, c)
		}
		r.lastErr = err
		r.tried++
		p.nextAttemptLocked(w, r, now)
	}
	p.updateReadyLocked(u)
	if u.retired && u.head == nil && u.inflight == 0 {
		p.forgetLocked(u)
	}
}

// lateLocked handles an attempt that has gone unanswered past its late
// threshold and is not connected: a lost SYN (the upstream's accept queue
// overflowed, or it is blackholed). It is a congestion signal; with
// adaptive pacing the attempt is also given up and re-sent from the front of
// the upstream's queue when the (now lower) limit allows, instead of
// waiting for the kernel's retransmission at 1 s, 3 s, 7 s. It keeps its
// deadline. giveUp is whether to do so (the caller has unregistered the
// socket then).
func (p *Pool) lateLocked(w *worker, s *slot, now time.Time, giveUp bool) {
	r, u := s.r, s.r.ups
	u.st.late++
	w.st.late.Add(1)
	u.pace.lostSYN(r.attStart, now)
	if !giveUp {
		return
	}
	w.releaseSlot(s)
	r.s, r.w = nil, nil
	u.inflight--
	r.resend = true
	r.resends = min(r.resends+1, maxResends)
	if p.isClosed {
		w.finishLater(r, ErrClosed)
	} else {
		w.wake |= p.enqueueLocked(u, r, true)
	}
	p.updateReadyLocked(u)
}

// healthyLocked records a connected attempt.
func (p *Pool) healthyLocked(w *worker, u *Upstream, now time.Time) {
	h := &u.health
	h.fails, h.lastOK = 0, now
	if !h.up && u.check == nil {
		p.markUpLocked(w, u, now, "trial connect succeeded")
	}
}

// unhealthyLocked records an attempt that failed for a reason of the
// upstream's (class c).
func (p *Pool) unhealthyLocked(w *worker, u *Upstream, now time.Time, c Class) {
	if p.cfg.FailAfter < 0 {
		return
	}
	h := &u.health
	if !h.up {
		if u.check == nil { // the trial failed: stay down, longer
			h.backoff = min(2*h.backoff, p.cfg.BackoffMax)
			h.retryAt = now.Add(h.backoff)
			p.evacuateLocked(w, u, now)
		}
		return
	}
	h.fails++
	// Dead, not overloaded: an upstream that completed a connect within
	// the last connect timeout is answering, and a storm that makes it drop
	// SYNs (timeouts in a row between successes) is the pacer's business.
	// Taking it down would turn an overload into an outage.
	if h.fails >= p.cfg.FailAfter && (h.lastOK.IsZero() || now.Sub(h.lastOK) >= p.cfg.ConnectTimeout) {
		p.markDownLocked(w, u, now, fmt.Sprintf("%d failed attempts in a row (last: %s)", h.fails, c))
	}
}

func (p *Pool) markUpLocked(w *worker, u *Upstream, now time.Time, why string) {
	h := &u.health
	h.up, h.fails, h.badChecks = true, 0, 0
	u.up.Store(true)
	u.st.transitions++
	w.events = append(w.events, HealthEvent{Key: u.key, Up: true, Reason: why, Down: now.Sub(h.downSince)})
	p.updateReadyLocked(u)
}

// markDownLocked takes u down and moves what waits in its queue to the
// requests' next candidates (without using a try: they never tried u), or
// completes them with ErrUpstreamsDown when none is up.
func (p *Pool) markDownLocked(w *worker, u *Upstream, now time.Time, why string) {
	h := &u.health
	h.up, h.okChecks, h.downSince = false, 0, now
	u.up.Store(false)
	u.st.transitions++
	ev := HealthEvent{Key: u.key, Up: false, Reason: why}
	if u.check == nil {
		h.backoff = p.cfg.Backoff
		h.retryAt = now.Add(h.backoff)
		ev.Down = h.backoff
	}
	w.events = append(w.events, ev)
	p.evacuateLocked(w, u, now)
}

// evacuateLocked moves what waits in a down upstream's queue to the
// requests' next candidates, or completes them.
func (p *Pool) evacuateLocked(w *worker, u *Upstream, now time.Time) {
	for u.head != nil {
		r := u.head
		p.unlinkLocked(r)
		if r.state.Load()&canceledBit != 0 {
			w.finishLater(r, ErrCanceled)
			continue
		}
		if v := p.routeLocked(r, now); v != nil && !p.isClosed {
			r.enq = now
			w.wake |= p.enqueueLocked(v, r, false)
			continue
		}
		err := r.lastErr
		if err == nil {
			err = ErrUpstreamsDown
		}
		w.finishLater(r, err)
	}
	p.updateReadyLocked(u)
}

// cancel is Request.Cancel's second half, after the canceled bit is set.
func (p *Pool) cancel(r *Request) {
	var mask uint64
	p.mu.Lock()
	switch {
	case r.inQueue:
		// Still queued: take it out now so it neither waits behind
		// hanging connects nor occupies a queue place; a worker completes
		// it, since the handler runs on a worker goroutine.
		u := r.ups
		p.unlinkLocked(r)
		p.updateReadyLocked(u)
		r.next, p.cancels = p.cancels, r
		if !p.isClosed {
			w := p.workers[0]
			for _, v := range p.workers {
				if v.posted {
					w = v
					break
				}
			}
			if !w.posted {
				w.posted = true
				mask = 1 << uint(w.id)
			}
		}
	case r.s != nil:
		// In flight on r.w: it finds the slot.
		w := r.w
		w.inflightCancels = append(w.inflightCancels, r)
		if !w.posted && !p.isClosed {
			w.posted = true
			mask = 1 << uint(w.id)
		}
	}
	// Otherwise r is being completed (or between two steps of its worker,
	// which checks the canceled bit before queueing it again).
	p.mu.Unlock()
	p.post(mask)
}
