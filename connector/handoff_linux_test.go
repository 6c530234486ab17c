//go:build linux

package connector

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A socket handed off connected stays in the worker's epoll set (its
// one-shot registration fired and is disarmed) until its owner closes it.
// It must report nothing more there: 20 connected sockets, writable and
// with bytes to read, kept open by the test, leave the worker idle — a
// handful of poll rounds over 200 ms (its own timers), where a still-armed
// level-triggered registration would spin it thousands of times.
func TestHandedOffSocketsLeaveTheWorkerQuiet(t *testing.T) {
	const n = 20
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{Workers: 1})
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{srv.addr}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	results := h.wait(t, n, 30*time.Second)
	defer closeLeft(t, results)
	for _, r := range results {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if _, err := unix.Write(r.FD, []byte{'x'}); err != nil { // echoed back: readable too
			t.Fatal(err)
		}
	}
	w := p.workers[0]
	rounds := func() int {
		ch := make(chan int, 1)
		if err := w.loop.Post(func(any) { ch <- w.loop.Rounds() }, nil); err != nil {
			t.Fatal(err)
		}
		return <-ch
	}
	before := rounds()
	// An observation window, not a wait for a state: what is measured is
	// how many rounds the worker makes while nothing is asked of it.
	time.Sleep(200 * time.Millisecond)
	if d := rounds() - before; d > 100 {
		t.Fatalf("the worker made %d poll rounds in 200 ms with only handed-off sockets around", d)
	}
}
