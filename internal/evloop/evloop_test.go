package evloop

import (
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"

	"github.com/relayd/relayd/timeout"
)

func TestTickPostStop(t *testing.T) {
	l, err := New(5*time.Millisecond, func(int, netpoll.IOEvent) { t.Error("no fd registered, no event expected") }, nil)
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
