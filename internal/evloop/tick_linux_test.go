//go:build linux

package evloop

import (
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/timeout"
)

// timerArmed reports whether the loop's timerfd is armed. It runs on the
// loop goroutine, so it returns its error instead of calling t.Fatal.
func timerArmed(l *Loop) (bool, error) {
	var cur unix.ItimerSpec
	if err := unix.TimerfdGettime(l.ticker.fd, &cur); err != nil {
		return false, err
	}
	return cur.Interval.Nano() != 0 || cur.Value.Nano() != 0, nil
}

type armed struct {
	on  bool
	err error
}

func mustArmed(t *testing.T, a armed) bool {
	t.Helper()
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a.on
}

// The tick runs only while the wheel holds a timer: an idle loop makes no
// wake-ups.
func TestTickOnlyWhileArmed(t *testing.T) {
	l, err := New(5*time.Millisecond, func(int, netpoll.IOEvent) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if on, err := timerArmed(l); err != nil || on {
		t.Fatalf("tick armed with an empty wheel (%v)", err)
	}
	fired := make(chan armed, 1)
	var tm timeout.Timer
	tm.Init(func(time.Time) {})
	_ = l.Post(func(any) {
		l.Wheel().Schedule(&tm, 20*time.Millisecond, l.Refresh())
		on, err := timerArmed(l)
		fired <- armed{on, err}
	}, nil)
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	if !mustArmed(t, <-fired) {
		t.Fatal("scheduling a timer did not arm the tick")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		state := make(chan armed, 1)
		_ = l.Post(func(any) {
			on, err := timerArmed(l)
			state <- armed{on || l.Wheel().Len() > 0, err}
		}, nil)
		if !mustArmed(t, <-state) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tick still armed after the only timer fired")
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
