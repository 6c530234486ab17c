//go:build linux

package connector

import "time"

// Pacing modes (Config.Pacing).
const (
	PacingAdaptive = "adaptive" // the default: a per-upstream limit moved by pacer
	PacingFixed    = "fixed"    // every upstream may have UpstreamMaxInflight connects in flight
)

// Controller constants; doc.go ("Adaptive pacing") says why each is what it is.
const (
	pacerInitial  = 8                      // starting limit (capped by the maximum)
	pacerBeta     = 0.5                    // multiplicative decrease on a congestion signal
	lateFloor     = 200 * time.Millisecond // an attempt older than this (and 3× the minimum) is late
	lateFactor    = 3                      // … times the recent minimum connect latency
	minLatWindow  = 10 * time.Second       // the minimum latency is the least of this window and the last
	pacerCalmSpan = 5 * time.Second        // no congestion for this long: slow start may resume
)

// pacer is one upstream's connect limit. It is a loss-based AIMD
// controller with slow start, as TCP Reno's window, over connect attempts
// instead of segments: see doc.go for why latency gradients (Vegas,
// Gradient2, Envoy's adaptive concurrency) do not fit connects.
//
// All methods take the time as an argument so that tests drive it exactly;
// the pool calls them under its mutex.
type pacer struct {
	adaptive bool
	limit    float64 // current limit; int(limit) ≥ 1 connects may be in flight
	max      float64
	ssthresh float64   // below it the limit grows by 1 per success (slow start), above by 1/limit
	lastCut  time.Time // attempts started before it cannot cut again (one cut per episode)
	minCur   time.Duration
	minPrev  time.Duration
	winStart time.Time
	cuts     uint64 // congestion cuts so far (exported as a counter)
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
// upstream, never past timeout.
func (p *pacer) lateAfter(timeout time.Duration) time.Duration {
	return min(max(lateFloor, lateFactor*p.minLatency()), timeout)
}

// success records a connect that completed after lat. limited says demand
// was at the limit (requests queued, or the limit was in use): only then
// does the limit grow, so an upstream that needs 2 connects at a time does
// not drift to the maximum and then storm it on the next burst.
func (p *pacer) success(lat time.Duration, now time.Time, limited bool) {
	if now.Sub(p.winStart) >= minLatWindow {
		p.minPrev, p.minCur, p.winStart = p.minCur, 0, now
	}
	if p.minCur == 0 || lat < p.minCur {
		p.minCur = max(lat, time.Nanosecond)
	}
	if !p.adaptive || !limited {
		return
	}
	if p.ssthresh < p.max && !p.lastCut.IsZero() && now.Sub(p.lastCut) >= pacerCalmSpan {
		p.ssthresh = p.max // calm for a while: find the new ceiling quickly
	}
	if p.limit < p.ssthresh {
		p.limit++
	} else {
		p.limit += 1 / p.limit
	}
	p.limit = min(p.limit, p.max)
}

// congestion records a lost SYN (a late attempt), a timeout or a refusal of
// an attempt started at started. It cuts the limit once per episode: the
// attempts that were already in flight when the limit was cut report the
// same overload and are ignored. It reports whether it cut.
func (p *pacer) congestion(started, now time.Time) bool {
	if !p.adaptive || started.Before(p.lastCut) {
		return false
	}
	p.limit = max(1, p.limit*pacerBeta)
	p.ssthresh = p.limit
	p.lastCut = now
	p.cuts++
	return true
}
