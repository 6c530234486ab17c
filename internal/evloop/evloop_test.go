//go:build linux

package evloop

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayd/relayd/timeout"
)

func TestTickPostStop(t *testing.T) {
	l, err := New(5*time.Millisecond, func(int, IOEvent) { t.Error("no fd registered, no event expected") })
	if err != nil {
		t.Fatal(err)
	}
	fired := make(chan time.Duration, 1)
	var tm timeout.Timer
	start := time.Now()
	tm.Init(func(now time.Time) { fired <- now.Sub(start) })
	if err := l.Post(func(any) { l.Wheel().Schedule(&tm, 30*time.Millisecond, l.Refresh()) }, nil); err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run() }()
	select {
	case d := <-fired:
		if d < 30*time.Millisecond {
			t.Fatalf("timer fired early after %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timer driven by the tick never fired")
	}
	l.Stop()
	l.Stop()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := l.Post(func(any) {}, nil); err != ErrStopped {
		t.Fatalf("Post after stop: %v", err)
	}
}

// Review C8: a task that Post accepted always runs, also when Stop overtakes
// it; after Run, Post refuses. Before the fix gnet's Polling dropped every
// task queued behind the stop, so a connect result (an fd) or a handed-over
// session (a counter) could vanish.
func TestPostAcceptedAlwaysRuns(t *testing.T) {
	l, err := New(0, func(int, IOEvent) {})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	const posters, each = 4, 2000
	var ran, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if l.Post(func(any) { ran.Add(1) }, nil) != nil {
					refused.Add(1)
				}
				if g == 0 && i == each/4 {
					l.Stop()
				}
			}
		}()
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := ran.Load() + refused.Load(); got != posters*each {
		t.Fatalf("%d tasks ran, %d refused: %d of %d posts lost", ran.Load(), refused.Load(), posters*each-got, posters*each)
	}
	if l.Post(func(any) {}, nil) != ErrStopped {
		t.Fatal("Post after Run returned did not refuse")
	}
}

// The alarm: one-shot, finer than the tick, re-armable, never early, and
// the wheel does not tick for it (a loop whose only timer is the alarm
// stays quiet).
func TestAlarm(t *testing.T) {
	l, err := New(time.Second, func(int, IOEvent) { t.Error("no fd registered, no event expected") })
	if err != nil {
		t.Fatal(err)
	}
	fired := make(chan time.Time, 4)
	if err := l.EnableAlarm(func(now time.Time) { fired <- now }); err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run() }()
	var start time.Time
	if err := l.Post(func(any) { start = time.Now(); l.Alarm(2 * time.Millisecond) }, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case now := <-fired:
		if d := now.Sub(start); d < 2*time.Millisecond {
			t.Fatalf("alarm fired early after %v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alarm never fired")
	}
	// Re-arming replaces the expiry: the first one (1 h) never fires.
	if err := l.Post(func(any) { l.Alarm(time.Hour); l.Alarm(time.Millisecond) }, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("re-armed alarm never fired")
	}
	l.Stop()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(fired) != 0 {
		t.Fatal("a one-shot alarm fired twice")
	}
}

// A loop that finds nothing to do for holdFor sleeps with its P given away
// (entersyscallblock). With one P and three such loops asleep, the test's
// goroutine keeps running, a garbage collection completes (its stop of the
// world does not wait for the sleepers), and a post to each sleeper wakes
// it: it gets a P back and runs the task.
func TestSleepGivesThePAway(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var loops []*Loop
	var runs []chan error
	for range 3 {
		l, err := New(0, func(int, IOEvent) {})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- l.Run() }()
		loops, runs = append(loops, l), append(runs, done)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, l := range loops {
		for l.given.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("an idle loop never slept with its P given away")
			}
			runtime.Gosched()
		}
	}
	runtime.GC()
	for round := range 3 {
		ran := make(chan int, len(loops))
		for i, l := range loops {
			if err := l.Post(func(any) { ran <- i }, nil); err != nil {
				t.Fatal(err)
			}
		}
		for range loops {
			select {
			case <-ran:
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: a sleeping loop did not run its task", round)
			}
		}
	}
	for i, l := range loops {
		l.Stop()
		if err := <-runs[i]; err != nil {
			t.Fatal(err)
		}
	}
}
