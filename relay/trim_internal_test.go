//go:build linux

package relay

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The trimmer's looks, taken by hand (no clock involved): a burst of
// buffer use is trimmed at the first look that finds it over, once; looks
// without new activity do not trim; a burst of closed sessions is trimmed
// too; activity below trimMinGets is not.
func TestTrimAfterBurst(t *testing.T) {
	in := startInjected(t, []netip.AddrPort{echoUpstream(t)}, nil)
	s := in.srv
	var st trimState
	s.trimLook(&st) // the activity so far (the fixture's) as the starting point
	st.trimmed = st.seen
	var bufs []*[]byte
	for range trimMinGets {
		bufs = append(bufs, s.getBuf())
	}
	for _, b := range bufs {
		s.putBuf(b)
	}
	if s.trimLook(&st) {
		t.Fatal("trimmed during the burst (the first look after it sees activity)")
	}
	if !s.trimLook(&st) {
		t.Fatal("not trimmed once the burst was over")
	}
	for i := range 3 {
		if s.trimLook(&st) {
			t.Fatalf("look %d without activity trimmed again", i)
		}
	}
	closed := s.closedTotal()
	for range trimMinGets {
		c, err := net.Dial("tcp", in.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitCond(t, "the sessions closed", func() bool { return s.closedTotal() >= closed+trimMinGets && in.active() == 0 })
	s.trimLook(&st) // sees the closes
	if !s.trimLook(&st) {
		t.Fatal("not trimmed after a burst of closes")
	}
	s.putBuf(s.getBuf())
	s.trimLook(&st)
	if s.trimLook(&st) {
		t.Fatal("trimmed after one buffer")
	}
}

// A trim gives back the fd tables a peak grew: after 200 sessions have come
// and gone, each loop's table is back to the smallest power of two above
// its highest fd in use, the listener's entry is kept (a new session is
// relayed after the trim), and the free connect requests are cut to
// keepFreeReq.
func TestTrimShrinksTables(t *testing.T) {
	in := startInjected(t, []netip.AddrPort{echoUpstream(t)}, nil)
	s := in.srv
	const n = 200
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", in.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		echoOnce(t, c)
	}
	onLoops := func(f func(l *loop)) {
		for _, l := range s.loops {
			done := make(chan struct{})
			if err := l.ev.Post(func(any) { f(l); close(done) }, nil); err != nil {
				t.Fatal(err)
			}
			<-done
		}
	}
	var peak int
	onLoops(func(l *loop) { peak = max(peak, len(l.fds)) })
	if peak < 2*n {
		t.Fatalf("fd tables reached %d entries with %d sessions", peak, n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitCond(t, "the sessions closed", func() bool { return in.active() == 0 })
	s.shrinkTables()
	onLoops(func(l *loop) {
		top := -1
		for fd, r := range l.fds {
			if r != (fdRef{}) {
				top = fd
			}
		}
		want := minFDTable
		for want < top+1 {
			want *= 2
		}
		if len(l.fds) != want {
			t.Errorf("loop %d: fd table %d entries after the trim, want %d (highest fd in use %d, peak %d)", l.id, len(l.fds), want, top, peak)
		}
		if len(l.reqs) > keepFreeReq || cap(l.reqs) > keepFreeReq {
			t.Errorf("loop %d: %d free requests (cap %d) kept", l.id, len(l.reqs), cap(l.reqs))
		}
	})
	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c)
}

// echoOnce sends 64 bytes through c and reads them back (bounded).
func echoOnce(t *testing.T, c net.Conn) {
	t.Helper()
	msg := bytes.Repeat([]byte{'e'}, 64)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
}
