//go:build linux

package relay

import (
	"net/netip"
	"testing"
)

func TestSmoothWRR(t *testing.T) {
	if seq := smoothWRR([]int64{2, 2, 2}); seq != nil {
		t.Fatalf("equal weights: %v, want plain round-robin", seq)
	}
	seq := smoothWRR([]int64{5, 1, 1})
	want := []int{0, 0, 1, 0, 2, 0, 0} // nginx's example: a a b a c a a
	if len(seq) != len(want) {
		t.Fatalf("sequence %v", seq)
	}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("sequence %v, want %v", seq, want)
		}
	}
}

func TestPickWeighted(t *testing.T) {
	addrs := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"), netip.MustParseAddrPort("127.0.0.1:3"),
	}
	u := newUpstreams(addrs, nil, []int{3, 1, 2}, false, 0)
	counts := make([]int, 3)
	for range 600 {
		i := u.pick()
		if u.rot[i][0] != addrs[i] {
			t.Fatalf("rotation %d starts at %v", i, u.rot[i][0])
		}
		counts[i]++
	}
	if counts[0] != 300 || counts[1] != 100 || counts[2] != 200 {
		t.Fatalf("counts %v, want 300/100/200", counts)
	}
	// Least sessions per weight: with 3, 1 and 2 active (1 each per unit
	// of weight), the tie is broken round-robin; one more on upstream 1
	// takes it out.
	lc := newUpstreams(addrs, nil, []int{3, 1, 2}, true, 0)
	lc.active[0].Store(3)
	lc.active[1].Store(2)
	lc.active[2].Store(2)
	for range 10 {
		if i := lc.pick(); i == 1 {
			t.Fatalf("picked upstream 1 with 2 sessions per weight")
		}
	}
	if got := lc.tries; got != 3 {
		t.Fatalf("tries %d", got)
	}
}
