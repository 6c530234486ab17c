//go:build linux

package evloop

import (
	"testing"
	"time"

	"github.com/relayd/relayd/timeout"
)

// onLoop runs fn on l's goroutine and returns its result.
func onLoop[T any](t *testing.T, l *Loop, fn func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	if err := l.Post(func(any) { ch <- fn() }, nil); err != nil {
		t.Fatal(err)
	}
	return <-ch
}

// A loop sleeps until the wheel's next deadline: one timer 600 ms away on a
// 5 ms wheel costs a handful of poll rounds, not the 120 a periodic tick
// would make, and an empty wheel means no timeout at all.
func TestSleepsUntilNextDeadline(t *testing.T) {
	l, err := New(5*time.Millisecond, func(int, IOEvent) {})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	if d := onLoop(t, l, l.timeout); d != -1 {
		t.Fatalf("empty wheel: sleep timeout %v, want none (-1)", d)
	}
	fired := make(chan int, 1)
	var tm timeout.Timer
	tm.Init(func(time.Time) { fired <- l.rounds })
	start := onLoop(t, l, func() int {
		l.Wheel().Schedule(&tm, 600*time.Millisecond, l.Refresh())
		return l.rounds
	})
	var at int
	select {
	case at = <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("timer never fired")
	}
	// The rounds in between: the timed-out sleep, plus the odd EINTR or
	// early return a loaded machine may add.
	if n := at - start; n > 5 {
		t.Fatalf("%d poll rounds while waiting 600 ms for one timer on a 5 ms wheel: the loop ticks instead of sleeping", n)
	}
	if d := onLoop(t, l, l.timeout); d != -1 {
		t.Fatalf("wheel empty again: sleep timeout %v, want none", d)
	}
	l.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
