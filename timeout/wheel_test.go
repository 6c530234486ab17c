package timeout

import (
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFiresAtDeadlineNotBefore(t *testing.T) {
	w := New(10*time.Millisecond, 8, t0)
	var fired []time.Time
	var tm Timer
	tm.Init(func(now time.Time) { fired = append(fired, now) })
	w.Schedule(&tm, 25*time.Millisecond, t0)
	if !tm.Armed() || w.Len() != 1 {
		t.Fatalf("armed=%v len=%d", tm.Armed(), w.Len())
	}
	for _, ms := range []int{9, 10, 20, 29} {
		if n := w.Advance(t0.Add(time.Duration(ms) * time.Millisecond)); n != 0 {
			t.Fatalf("fired early at %d ms", ms)
		}
	}
	if n := w.Advance(t0.Add(30 * time.Millisecond)); n != 1 || len(fired) != 1 {
		t.Fatalf("want 1 fire at 30ms, got n=%d fired=%d", n, len(fired))
	}
	if tm.Armed() || w.Len() != 0 {
		t.Fatalf("after fire: armed=%v len=%d", tm.Armed(), w.Len())
	}
}

func TestStopAndReschedule(t *testing.T) {
	w := New(time.Millisecond, 4, t0)
	n := 0
	var a Timer
	a.Init(func(time.Time) { n++ })
	w.Schedule(&a, 5*time.Millisecond, t0)
	if !w.Stop(&a) || w.Stop(&a) {
		t.Fatal("Stop must report true once, then false")
	}
	w.Advance(t0.Add(time.Second))
	if n != 0 {
		t.Fatalf("stopped timer fired %d times", n)
	}
	// Re-arming moves the deadline rather than adding a second entry.
	w.Schedule(&a, 5*time.Millisecond, t0.Add(time.Second))
	w.Schedule(&a, 50*time.Millisecond, t0.Add(time.Second))
	if w.Len() != 1 {
		t.Fatalf("len=%d after re-arm", w.Len())
	}
	w.Advance(t0.Add(time.Second + 20*time.Millisecond))
	if n != 0 {
		t.Fatal("fired at the old deadline")
	}
	w.Advance(t0.Add(time.Second + 50*time.Millisecond))
	if n != 1 {
		t.Fatalf("fired %d, want 1", n)
	}
}

// More rounds than slots: a timer far in the future shares a slot with near
// ones and must wait for its own round.
func TestRoundsAndLongStall(t *testing.T) {
	w := New(time.Millisecond, 4, t0)
	var got []int
	timers := make([]Timer, 10)
	for i := range timers {
		i := i
		timers[i].Init(func(time.Time) { got = append(got, i) })
		w.Schedule(&timers[i], time.Duration(i+1)*3*time.Millisecond, t0)
	}
	w.Advance(t0.Add(3 * time.Millisecond))
	if len(got) != 1 || got[0] != 0 {
		t.Fatalf("after 3ms got %v", got)
	}
	// A stall far beyond a full revolution fires everything due, in tick order.
	w.Advance(t0.Add(time.Hour))
	if len(got) != 10 {
		t.Fatalf("after stall got %v", got)
	}
	for i := range got {
		if got[i] != i {
			t.Fatalf("order %v", got)
		}
	}
}

// Callbacks may stop a timer that is due in the same Advance, and re-arm
// themselves; neither corrupts the walk.
func TestCallbackStopsAndRearms(t *testing.T) {
	w := New(time.Millisecond, 8, t0)
	var a, b, c Timer
	fa, fb, fc := 0, 0, 0
	a.Init(func(now time.Time) { fa++; w.Stop(&b); w.Schedule(&a, 2*time.Millisecond, now) })
	b.Init(func(time.Time) { fb++ })
	c.Init(func(time.Time) { fc++ })
	w.Schedule(&a, time.Millisecond, t0)
	w.Schedule(&b, time.Millisecond, t0)
	w.Schedule(&c, time.Millisecond, t0)
	w.Advance(t0.Add(time.Millisecond))
	if fa != 1 || fb != 0 || fc != 1 {
		t.Fatalf("fa=%d fb=%d fc=%d", fa, fb, fc)
	}
	if !a.Armed() || w.Len() != 1 {
		t.Fatalf("a should be re-armed alone: armed=%v len=%d", a.Armed(), w.Len())
	}
	w.Advance(t0.Add(3 * time.Millisecond))
	if fa != 2 {
		t.Fatalf("re-armed timer fired %d", fa)
	}
}

// Against a brute-force model with random schedule/stop/advance.
func TestRandomAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w := New(time.Millisecond, 16, t0)
	const n = 200
	timers := make([]Timer, n)
	deadline := make([]time.Time, n) // zero = not armed in the model
	now := t0
	for i := range timers {
		i := i
		timers[i].Init(func(fnow time.Time) {
			if deadline[i].IsZero() {
				t.Fatalf("timer %d fired while disarmed", i)
			}
			if fnow.Before(deadline[i]) {
				t.Fatalf("timer %d fired early: %v < %v", i, fnow, deadline[i])
			}
			if fnow.Sub(deadline[i]) > 2*time.Millisecond+w.Tick() && fnow.Sub(deadline[i]) > 0 {
				// Only possible if Advance was not called in between; our
				// driver below advances by at most 2 ms at a time.
				t.Fatalf("timer %d fired late: %v", i, fnow.Sub(deadline[i]))
			}
			deadline[i] = time.Time{}
		})
	}
	for step := 0; step < 20000; step++ {
		i := r.IntN(n)
		switch op := r.IntN(10); {
		case op < 4:
			d := time.Duration(r.IntN(100)) * time.Millisecond / 3
			w.Schedule(&timers[i], d, now)
			deadline[i] = now.Add(d)
		case op < 5:
			w.Stop(&timers[i])
			deadline[i] = time.Time{}
		default:
			now = now.Add(time.Duration(r.IntN(2000)) * time.Microsecond)
			w.Advance(now)
		}
		armed := 0
		for j := range deadline {
			if !deadline[j].IsZero() {
				armed++
			}
		}
		if armed != w.Len() {
			t.Fatalf("step %d: model has %d armed, wheel %d", step, armed, w.Len())
		}
	}
}

func BenchmarkScheduleStop(b *testing.B) {
	b.ReportAllocs()
	w := New(time.Millisecond, 1024, t0)
	timers := make([]Timer, 4096)
	for i := range timers {
		timers[i].Init(func(time.Time) {})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tm := &timers[i&4095]
		w.Schedule(tm, time.Duration(i&1023)*time.Millisecond, t0)
		if i&1 == 0 {
			w.Stop(tm)
		}
	}
}

func BenchmarkAdvance(b *testing.B) {
	b.ReportAllocs()
	w := New(time.Millisecond, 1024, t0)
	timers := make([]Timer, 10000)
	now := t0
	for i := range timers {
		tm := &timers[i]
		tm.Init(func(n time.Time) { w.Schedule(tm, 5*time.Second, n) })
		w.Schedule(tm, time.Duration(i%5000)*time.Millisecond, now)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		w.Advance(now)
	}
}

// Next is never later than the earliest armed timer, is exactly its tick when
// that is within the scan span, follows Schedule of an earlier timer and
// Advance past a stopped one, and reports an empty wheel.
func TestNext(t *testing.T) {
	start := time.Unix(1000, 0)
	w := New(10*time.Millisecond, 64, start)
	if _, ok := w.Next(); ok {
		t.Fatal("empty wheel has a next deadline")
	}
	var a, b, far Timer
	for _, tm := range []*Timer{&a, &b, &far} {
		tm.Init(func(time.Time) {})
	}
	at := func() time.Duration {
		t.Helper()
		n, ok := w.Next()
		if !ok {
			t.Fatal("no next deadline with timers armed")
		}
		return n.Sub(start)
	}
	w.Schedule(&a, 95*time.Millisecond, start) // tick 10
	if got := at(); got != 100*time.Millisecond {
		t.Fatalf("next %v, want 100ms", got)
	}
	w.Schedule(&b, 30*time.Millisecond, start) // tick 3: earlier
	if got := at(); got != 30*time.Millisecond {
		t.Fatalf("after an earlier Schedule: next %v, want 30ms", got)
	}
	w.Stop(&b) // a stale hint is early, never late
	if got := at(); got > 30*time.Millisecond {
		t.Fatalf("after Stop: next %v is later than the stale bound", got)
	}
	w.Advance(start.Add(30 * time.Millisecond))
	if got := at(); got != 100*time.Millisecond {
		t.Fatalf("after Advance past the stopped timer: next %v, want 100ms", got)
	}
	// Beyond the wheel's span (64 slots × 10 ms): a timer in a later round
	// of its slot is not due in this one; Next answers the end of the scan.
	w.Stop(&a)
	w.Schedule(&far, 5*time.Second, start.Add(30*time.Millisecond))
	if got := at(); got != 100*time.Millisecond {
		t.Fatalf("far timer behind a stopped one: next %v, want the stale 100ms", got)
	}
	w.Advance(start.Add(100 * time.Millisecond))
	if got := at(); got != (10+64)*10*time.Millisecond {
		t.Fatalf("far timer: next %v, want the end of one scan (740ms)", got)
	}
}
