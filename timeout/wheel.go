package timeout

import (
	"cmp"
	"math/bits"
	"slices"
	"time"
)

type timerState uint8

const (
	stateIdle timerState = iota
	stateArmed
	statePending // detached by Advance, about to fire in this call
)

// Timer is one deadline. The zero value is an idle timer that must be bound
// to a callback with Init before it is scheduled. A Timer belongs to at most
// one Wheel at a time and must not be copied while armed.
type Timer struct {
	prev, next *Timer
	expires    int64 // absolute tick at which it fires
	state      timerState
	fn         func(now time.Time)
}

// Init binds the callback run when the timer fires. Call it once, when the
// owning object is created; the callback runs on the wheel owner's goroutine
// inside Advance and may schedule or stop any timer, itself included.
func (t *Timer) Init(fn func(now time.Time)) { t.fn = fn }

// Armed reports whether the timer is scheduled and has not fired or been
// stopped.
func (t *Timer) Armed() bool { return t.state == stateArmed }

// Wheel is a hashed timing wheel: slots buckets of tick width; a timer lives in
// the slot of its expiry tick modulo the slot count, and Advance walks only
// the slots of the ticks that have passed.
type Wheel struct {
	tick  time.Duration
	start time.Time
	slots []Timer // sentinel heads of circular lists
	mask  int64
	cur   int64 // last tick Advance has processed
	n     int
	due   []*Timer // reused between Advance calls: no allocation once warm
	// hint is a lower bound of the earliest armed expiry while hint > cur
	// (Schedule lowers it, Stop leaves it: early is safe); once Advance has
	// passed it, Next scans for a new one.
	hint int64
}

// nextScan bounds Next's search: past it Next answers the end of the scanned
// span, so a wheel of far deadlines costs a wake-up every nextScan ticks
// (2.56 s at 10 ms) rather than a walk of every slot per sleep.
const nextScan = 256

// New returns a wheel with the given tick and at least slots buckets
// (rounded up to a power of two), whose time starts at now. tick ≤ 0 means
// 10 ms; slots ≤ 0 means 1024.
func New(tick time.Duration, slots int, now time.Time) *Wheel {
	if tick <= 0 {
		tick = 10 * time.Millisecond
	}
	if slots <= 0 {
		slots = 1024
	}
	n := 1 << bits.Len(uint(slots-1))
	w := &Wheel{tick: tick, start: now, slots: make([]Timer, n), mask: int64(n - 1)}
	for i := range w.slots {
		h := &w.slots[i]
		h.prev, h.next = h, h
	}
	return w
}

// Tick returns the wheel's resolution.
func (w *Wheel) Tick() time.Duration { return w.tick }

// Len returns the number of armed timers.
func (w *Wheel) Len() int { return w.n }

func (w *Wheel) tickOf(t time.Time) int64 {
	d := t.Sub(w.start)
	if d < 0 {
		return 0
	}
	return int64(d / w.tick)
}

// Schedule arms t to fire d after now, re-arming it if it is already armed.
// A deadline that falls in a tick Advance has already processed fires on the
// next Advance.
func (w *Wheel) Schedule(t *Timer, d time.Duration, now time.Time) {
	w.ScheduleAt(t, now.Add(d))
}

// ScheduleAt arms t to fire at deadline (rounded up to the tick).
func (w *Wheel) ScheduleAt(t *Timer, deadline time.Time) {
	if t.state == stateArmed {
		w.unlink(t)
	}
	d := deadline.Sub(w.start)
	exp := int64(0)
	if d > 0 {
		exp = int64((d + w.tick - 1) / w.tick) // ceil: never fire early
	}
	if exp <= w.cur {
		exp = w.cur + 1
	}
	t.expires = exp
	h := &w.slots[exp&w.mask]
	t.prev, t.next = h.prev, h
	h.prev.next = t
	h.prev = t
	t.state = stateArmed
	w.n++
	if w.hint > w.cur && exp < w.hint {
		w.hint = exp
	}
}

// Next returns when the wheel should next be advanced: the start of the
// earliest tick that holds a due timer, or, when none is due within the next
// nextScan ticks, the end of that span (Advance then fires nothing and Next
// looks further). ok is false when no timer is armed. Amortised O(1): the
// answer is cached until Advance passes it or Schedule arms an earlier timer.
func (w *Wheel) Next() (at time.Time, ok bool) {
	if w.n == 0 {
		return time.Time{}, false
	}
	if w.hint <= w.cur {
		w.hint = w.scan()
	}
	return w.start.Add(time.Duration(w.hint) * w.tick), true
}

// scan finds the first tick after cur whose slot holds a timer expiring in
// it, within nextScan ticks.
func (w *Wheel) scan() int64 {
	last := w.cur + min(nextScan, int64(len(w.slots)))
	for tk := w.cur + 1; tk <= last; tk++ {
		h := &w.slots[tk&w.mask]
		for t := h.next; t != h; t = t.next {
			if t.expires <= tk {
				return tk
			}
		}
	}
	return last
}

// Stop disarms t. It reports whether t was armed; stopping an idle timer is a
// no-op, so owners can Stop unconditionally on teardown.
func (w *Wheel) Stop(t *Timer) bool {
	switch t.state {
	case stateArmed:
		w.unlink(t)
		return true
	case statePending:
		t.state = stateIdle
		return true
	}
	return false
}

func (w *Wheel) unlink(t *Timer) {
	t.prev.next = t.next
	t.next.prev = t.prev
	t.prev, t.next = nil, nil
	t.state = stateIdle
	w.n--
}

// Advance fires, in deadline-tick order, every timer whose deadline is at or
// before now, and returns how many fired. Callbacks receive now.
func (w *Wheel) Advance(now time.Time) int {
	target := w.tickOf(now)
	if target <= w.cur {
		return 0
	}
	// After a long stall, one sweep of every slot finds all that is due;
	// walking more ticks than there are slots would revisit the same lists.
	from, stalled := w.cur+1, false
	if target-from >= int64(len(w.slots)) {
		from, stalled = target-int64(len(w.slots))+1, true
	}
	for tk := from; tk <= target; tk++ {
		h := &w.slots[tk&w.mask]
		for t := h.next; t != h; {
			next := t.next
			if t.expires <= tk {
				w.unlink(t)
				t.state = statePending
				w.due = append(w.due, t)
			}
			t = next
		}
	}
	w.cur = target
	if stalled {
		slices.SortStableFunc(w.due, func(a, b *Timer) int { return cmp.Compare(a.expires, b.expires) })
	}
	// Callbacks run once every due timer is detached: they may stop or re-arm
	// any timer (re-arming lands after target), never corrupting the walk.
	fired := 0
	for i, t := range w.due {
		w.due[i] = nil
		if t.state == statePending {
			t.state = stateIdle
			fired++
			t.fn(now)
		}
	}
	w.due = w.due[:0]
	return fired
}
