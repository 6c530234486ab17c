//go:build linux

package connector

import "time"

// Pacing modes (Config.Pacing).
const (
	PacingAdaptive = "adaptive" // the default: a per-upstream window and rate moved by pacer
	PacingFixed    = "fixed"    // every upstream may have UpstreamMaxInflight connects in flight
)

// Controller constants; doc.go ("Adaptive pacing") says why each is what it is.
const (
	pacerInitial  = 8                      // starting window (capped by the maximum)
	pacerBeta     = 0.5                    // window decrease on a congestion signal
	rateBeta      = 0.7                    // the rate after a loss, as a share of what the upstream absorbed just before
	rateMin       = 10.0                   // connects/s: the slowest pace (a dead upstream is probed no faster)
	rateGain      = 2.0                    // the pace grows by this factor per rate window of demand without a loss
	rateWindow    = 100 * time.Millisecond // the absorbed rate is measured per window of this …
	rateWindows   = 10                     // … and the best of the last this many counts (1 s)
	lateFloor     = 2 * time.Millisecond   // an attempt older than this (and 3× the minimum) is late: its SYN was lost …
	maxResends    = 16                     // … and each re-send of one request's SYN doubles that, as TCP's SYN timer backs off
	lateFactor    = 3                      // … times the recent minimum connect latency
	minLatWindow  = 10 * time.Second       // the minimum latency is the least of this window and the last
	pacerCalmSpan = 5 * time.Second        // no congestion for this long: pacing off, slow start may resume
	burstSpan     = 2 * time.Millisecond   // a paced upstream may take this much of its rate at once (≥ 2 starts)
	lossThresh    = 0.1                    // lost SYNs cut only when they are this share of the starts of the last two windows
)

// pacer is one upstream's connect limits: a window (connects in flight) and,
// after a loss, a rate (connect starts per second). The window is a
// loss-based AIMD controller with slow start, as TCP Reno's, over connect
// attempts instead of segments; the rate is what bounds an upstream whose
// connects complete in microseconds (loopback, the same rack), where the
// window bounds nothing: a connect leaves the window when the kernel
// completes the handshake, long before the application accepts it, so only
// the pace at which new connections reach the listen queue keeps it from
// overflowing. See doc.go for why latency gradients (Vegas, Gradient2,
// Envoy's adaptive concurrency) do not fit connects.
//
// All methods take the time as an argument so that tests drive it exactly;
// the pool calls them under its mutex.
type pacer struct {
	adaptive bool
	limit    float64 // window; int(limit) ≥ 1 connects may be in flight
	max      float64
	ssthresh float64   // below it the window grows by 1 per success (slow start), above by 1/limit
	lastCut  time.Time // attempts started before it cannot cut again (one cut per episode)
	cuts     uint64    // congestion cuts so far (exported as a counter)

	rate   float64   // connect starts per second; 0 = not paced
	tokens float64   // token bucket for rate
	refill time.Time // tokens were last topped up
	grown  time.Time // the rate last grew

	minCur, minPrev time.Duration // least connect latency this window and the last
	winStart        time.Time

	okSlot [rateWindows]int64 // rate window number (time / rateWindow) of each count
	okN    [rateWindows]int   // successes in that window
	stN    [rateWindows]int   // connect starts in that window
	lostN  [rateWindows]int   // lost SYNs in that window
}

func newPacer(adaptive bool, max int) pacer {
	p := pacer{adaptive: adaptive, max: float64(max), ssthresh: float64(max)}
	p.limit = p.max
	if adaptive {
		p.limit = min(pacerInitial, p.max)
	}
	return p
}

// cap is the number of connects that may be in flight now.
func (p *pacer) cap() int { return max(1, int(p.limit)) }

// ratePerSec is the pace in connect starts per second (0 = not paced).
func (p *pacer) ratePerSec() float64 { return p.rate }

// minLatency is the least connect latency seen over the last one to two
// windows (0 before the first success).
func (p *pacer) minLatency() time.Duration {
	switch {
	case p.minPrev == 0:
		return p.minCur
	case p.minCur == 0:
		return p.minPrev
	}
	return min(p.minCur, p.minPrev)
}

// lateAfter is how long an attempt may stay unanswered before it counts as
// a lost SYN: the floor, or three times the recent minimum for a distant
// upstream, doubled for each SYN of the same request already re-sent
// (resends), never past timeout. The doubling is what makes a short
// threshold safe: a path that got slower than the threshold (a longer
// route, a congested link) would otherwise have every attempt given up
// and re-sent until the deadline; with it a request outgrows the new round
// trip after a few re-sends, as TCP's SYN retransmission timer backs off.
func (p *pacer) lateAfter(timeout time.Duration, resends uint8) time.Duration {
	d := max(lateFloor, lateFactor*p.minLatency())
	return min(d<<min(resends, maxResends), timeout)
}

// take reports whether a connect may start now under the rate, and takes
// its token.
func (p *pacer) take(now time.Time) bool {
	if p.rate == 0 {
		p.stN[p.win(now)]++
		return true
	}
	burst := max(2, p.rate*burstSpan.Seconds())
	if dt := now.Sub(p.refill); dt > 0 {
		p.tokens = min(burst, p.tokens+p.rate*dt.Seconds())
		p.refill = now
	}
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	p.stN[p.win(now)]++
	return true
}

// wait is how long until take can succeed (0: now).
func (p *pacer) wait(now time.Time) time.Duration {
	if p.due(now) {
		return 0
	}
	have := p.tokens + p.rate*now.Sub(p.refill).Seconds()
	return time.Duration((1 - have) / p.rate * float64(time.Second))
}

// due reports whether take would succeed now, without taking.
func (p *pacer) due(now time.Time) bool {
	if p.rate == 0 {
		return true
	}
	burst := max(2, p.rate*burstSpan.Seconds())
	return min(burst, p.tokens+p.rate*now.Sub(p.refill).Seconds()) >= 1
}

// absorbed is the best success rate of the last rateWindows windows: what
// the upstream demonstrably took, in the spirit of BBR's windowed maximum
// of the delivery rate. The best, not the latest: the windows of an
// overload episode (SYNs lost, sessions waiting for re-sends) deliver less
// than the upstream can take, and pacing at what a loss window delivered
// would spiral down.
func (p *pacer) absorbed(now time.Time) float64 { return p.best(now, false) }

// started is the best connect start rate of the last windows: the demand
// while the upstream was not paced.
func (p *pacer) started(now time.Time) float64 { return p.best(now, true) }

func (p *pacer) best(now time.Time, starts bool) float64 {
	cur := now.UnixNano() / int64(rateWindow)
	best := 0.0
	for i, slot := range p.okSlot {
		n := float64(p.okN[i])
		if starts {
			n = float64(p.stN[i])
		}
		switch age := cur - slot; {
		case age > 0 && age < rateWindows:
			best = max(best, n/rateWindow.Seconds())
		case age == 0: // the current window, by its elapsed part (at least a tenth)
			el := max(time.Duration(now.UnixNano()-cur*int64(rateWindow)), rateWindow/10)
			best = max(best, n/el.Seconds())
		}
	}
	return best
}

// win returns the ring index of the current rate window, clearing it when
// the window is new.
func (p *pacer) win(now time.Time) int {
	cur := now.UnixNano() / int64(rateWindow)
	i := int(cur % rateWindows)
	if p.okSlot[i] != cur {
		p.okSlot[i], p.okN[i], p.stN[i], p.lostN[i] = cur, 0, 0, 0
	}
	return i
}

// success records a connect that completed after lat. limited says demand
// was at the limit (requests queued, or the window in use): only then do
// the window and the rate grow, so an upstream that needs 2 connects at a
// time does not drift to the maximum and then storm it on the next burst.
func (p *pacer) success(lat time.Duration, now time.Time, limited bool) {
	if now.Sub(p.winStart) >= minLatWindow {
		p.minPrev, p.minCur, p.winStart = p.minCur, 0, now
	}
	if p.minCur == 0 || lat < p.minCur {
		p.minCur = max(lat, time.Nanosecond)
	}
	p.okN[p.win(now)]++
	if !p.adaptive {
		return
	}
	calm := !p.lastCut.IsZero() && now.Sub(p.lastCut) >= pacerCalmSpan
	if calm {
		p.ssthresh, p.rate = p.max, 0 // calm for a while: find the new ceiling quickly, unpaced
	}
	if !limited {
		return
	}
	if p.rate > 0 && p.rate > 4*p.started(now) && now.Sub(p.lastCut) >= rateWindows*rateWindow {
		// The pace has not been what limits the starts for a while: off,
		// rather than a number that grows without meaning.
		p.rate = 0
	}
	if p.rate > 0 && now.Sub(p.grown) >= rateWindow {
		// Probe upwards quickly (×2 per 100 ms): a loss costs one re-sent
		// SYN after lateFloor and a cut to what was absorbed, while a pace
		// below what the upstream takes costs every queued session time.
		// Never past 4× the starts the window lets through: a pace that
		// binds nothing must not grow into a meaningless number.
		p.rate = max(p.rate, min(p.rate*rateGain, 4*p.started(now)))
		p.grown = now
	}
	if p.limit < p.ssthresh {
		p.limit++
	} else {
		p.limit += 1 / p.limit
	}
	p.limit = min(p.limit, p.max)
}

// congestion records a lost SYN (a late attempt), a timeout or a refusal of
// an attempt started at started. It cuts once per episode: the attempts
// that were already in flight when the limits were cut report the same
// overload and are ignored. The window halves; the rate becomes rateBeta
// of what the upstream absorbed over the last rate windows, so the listen
// queue drains. It reports whether it cut.
func (p *pacer) congestion(started, now time.Time) bool {
	return p.cut(started, now)
}

// lostSYN records a lost SYN of an attempt started at started. Unlike a
// timeout or a refusal it cuts only when lost SYNs are lossThresh of the
// starts of the current and the last rate window: a listen queue that
// overflows now and then (a busy upstream host) costs a re-sent SYN each,
// lateFloor (2 ms), which is cheaper than a pace below what the upstream takes.
// BBRv2 keeps a loss threshold (2 %) for the same reason.
func (p *pacer) lostSYN(started, now time.Time) bool {
	if !p.adaptive {
		return false
	}
	i := p.win(now)
	p.lostN[i]++
	cur := now.UnixNano() / int64(rateWindow)
	j := int((cur + rateWindows - 1) % rateWindows)
	lost, starts := p.lostN[i], p.stN[i]
	if p.okSlot[j] == cur-1 {
		lost, starts = lost+p.lostN[j], starts+p.stN[j]
	}
	if float64(lost) < lossThresh*float64(max(starts, 1)) {
		return false
	}
	return p.cut(started, now)
}

// cut is congestion's work, shared with lostSYN.
func (p *pacer) cut(started, now time.Time) bool {
	// At most one cut per rate window, as TCP cuts at most once per round
	// trip: on a host busy with the storm itself (accepting thousands of
	// clients) late answers come in clusters, and a cut per cluster would
	// spiral the pace down before the upstream has shown what it takes.
	if !p.adaptive || started.Before(p.lastCut) || (!p.lastCut.IsZero() && now.Sub(p.lastCut) < rateWindow) {
		return false
	}
	p.limit = max(1, p.limit*pacerBeta)
	p.ssthresh = p.limit
	r := rateBeta * p.absorbed(now)
	if p.rate > 0 {
		r = max(r, rateBeta*p.rate) // a paced upstream: at most rateBeta per cut
	} else {
		// The first cut: what was absorbed so far may say more about the
		// demand than about the upstream (few clients yet), so start from
		// the pace connects were being started at; later cuts take it down.
		r = max(r, rateBeta*p.started(now))
	}
	p.rate = max(rateMin, r)
	p.tokens, p.refill, p.grown = 1, now, now
	p.lastCut = now
	p.cuts++
	return true
}
