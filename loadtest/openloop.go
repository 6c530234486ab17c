package loadtest

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// A run falls short of its rate when its started rate is below
// rateTolerance of the asked one and its last session began more than
// maxLag (or lagShare of the planned span, if longer) after it was due.
// A schedule held up for a moment (a timer late on a busy machine, a
// stall of the target with the cap full) catches up and shows as latency;
// one that cannot keep up falls further behind all the time.
const (
	rateTolerance = 0.97
	maxLag        = 200 * time.Millisecond
	lagShare      = 0.05
)

// openLoop starts one session every 1/Rate seconds on a fixed schedule
// (wrk2's constant-throughput model), each in its own goroutine, whatever
// the sessions before it are doing: a target that stalls shows as latency
// for every session due during the stall, not as a lower rate
// (coordinated omission). Each session's latency counts from when it was
// due. At most Concurrency sessions are outstanding; when that cap is
// full the schedule waits and the sessions it delays carry the wait in
// their latency. The schedule ends after Sessions sessions or when
// deadline passes.
//
// If the sessions did not start at the asked rate — the cap was full, or
// this process could not start them that fast — res.RateShortfall says so
// and why, and CheckThresholds fails the run.
func (r *runner) openLoop(ctx context.Context, fn sessionFunc, deadline time.Time, res *Result) {
	period := float64(time.Second) / r.cfg.Rate
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	t0 := time.Now()
	var started uint64
	var capWait time.Duration   // time the schedule spent waiting for the cap
	var last, lastDue time.Time // when the last session actually started, and was due
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
loop:
	for i := uint64(0); ; i++ {
		if r.cfg.Sessions > 0 && i >= uint64(r.cfg.Sessions) {
			break
		}
		due := t0.Add(time.Duration(float64(i) * period))
		if !deadline.IsZero() && !due.Before(deadline) {
			break
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break loop
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			w := time.Now()
			select {
			case sem <- struct{}{}:
				capWait += time.Since(w)
			case <-ctx.Done():
				break loop
			}
		}
		if ctx.Err() != nil {
			<-sem
			break
		}
		started++
		last, lastDue = time.Now(), due
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			defer func() { <-sem }()
			_ = fn(ctx, id, due, nil)
		}(i)
	}
	wg.Wait()
	if started < 2 || ctx.Err() != nil {
		return
	}
	// The rate the schedule actually kept: sessions started over the time
	// from the first start to the last.
	span := last.Sub(t0).Seconds()
	want := float64(started-1) / r.cfg.Rate
	res.StartedPerSec = r.cfg.Rate
	if span > 0 {
		res.StartedPerSec = min(float64(started-1)/span, r.cfg.Rate)
	}
	lag := last.Sub(lastDue)
	if !short(res.StartedPerSec, r.cfg.Rate, lag, want) {
		return
	}
	why := "this process could not start sessions that fast (it is CPU-bound: spread the load with --procs)"
	if capWait > time.Duration((span-want)*0.5*float64(time.Second)) {
		why = fmt.Sprintf("%d sessions were outstanding (the --concurrency cap) for %.1fs of it: the target answers more slowly than the rate brings sessions in",
			r.cfg.Concurrency, capWait.Seconds())
	}
	res.RateShortfall = fmt.Sprintf("asked for %.0f sessions/s, started %.0f/s (the last %v late): %s", r.cfg.Rate, res.StartedPerSec, lag.Round(time.Millisecond), why)
}

// short reports whether a schedule fell short: started below
// rateTolerance of rate, and the last start lag beyond maxLag (or
// lagShare of the planned span want, in seconds).
func short(started, rate float64, lag time.Duration, want float64) bool {
	return started < rateTolerance*rate && lag > max(maxLag, time.Duration(lagShare*want*float64(time.Second)))
}

// schedule is one keep-alive connection's request times in open loop:
// request k is due at next + k·step (its worker's slot of the rate).
type schedule struct {
	next, deadline time.Time
	step           time.Duration
	n              uint64        // requests started
	last           time.Time     // when the last one started
	lag            time.Duration // how late it started
}

// over reports whether the schedule has no request due before the run's
// end (a nil schedule, closed loop, never is).
func (s *schedule) over() bool {
	return s != nil && !s.deadline.IsZero() && !s.next.Before(s.deadline)
}

// wait sleeps until the next request is due and returns its due time;
// false when the run ends first.
func (s *schedule) wait(ctx context.Context) (time.Time, bool) {
	due := s.next
	if s.over() {
		return due, false
	}
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return due, false
		}
	}
	s.next = s.next.Add(s.step)
	s.n++
	s.last = time.Now()
	s.lag = s.last.Sub(due)
	return due, true
}

// keepAliveShortfall sets res's open-loop figures of a keep-alive run
// from its connections' schedules.
func (r *runner) keepAliveShortfall(t0 time.Time, scheds []*schedule, res *Result) {
	var n uint64
	var last time.Time
	var lag time.Duration
	for _, s := range scheds {
		n += s.n
		if s.last.After(last) {
			last = s.last
		}
		lag = max(lag, s.lag)
	}
	if n < 2 {
		return
	}
	span := last.Sub(t0).Seconds()
	res.StartedPerSec = r.cfg.Rate
	if span > 0 {
		res.StartedPerSec = min(float64(n-1)/span, r.cfg.Rate)
	}
	if short(res.StartedPerSec, r.cfg.Rate, lag, float64(n-1)/r.cfg.Rate) {
		res.RateShortfall = fmt.Sprintf("asked for %.0f requests/s, started %.0f/s (a request %v late): the %d connections could not carry it — each waits for its answer before its next request; use more --concurrency, or the target answers more slowly than that",
			r.cfg.Rate, res.StartedPerSec, lag.Round(time.Millisecond), len(scheds))
	}
}
