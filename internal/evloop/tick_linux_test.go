//go:build linux

package evloop

import (
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/timeout"
)

func timerArmed(t *testing.T, l *Loop) bool {
	t.Helper()
	var cur unix.ItimerSpec
	if err := unix.TimerfdGettime(l.ticker.fd, &cur); err != nil {
		t.Fatal(err)
	}
	return cur.Interval.Nano() != 0 || cur.Value.Nano() != 0
}

// The tick runs only while the wheel holds a timer: an idle loop makes no
// wake-ups.
func TestTickOnlyWhileArmed(t *testing.T) {
	l, err := New(5*time.Millisecond, func(int, netpoll.IOEvent) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if timerArmed(t, l) {
		t.Fatal("tick armed with an empty wheel")
	}
	fired := make(chan bool, 1)
	var tm timeout.Timer
	tm.Init(func(time.Time) {})
	_ = l.Post(func(any) {
		l.Wheel().Schedule(&tm, 20*time.Millisecond, l.Refresh())
		fired <- timerArmed(t, l)
	}, nil)
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	if !<-fired {
		t.Fatal("scheduling a timer did not arm the tick")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		armed := make(chan bool, 1)
		_ = l.Post(func(any) { armed <- timerArmed(t, l) || l.Wheel().Len() > 0 }, nil)
		if !<-armed {
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
