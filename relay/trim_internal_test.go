//go:build linux

package relay

import (
	"net"
	"net/netip"
	"testing"
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
