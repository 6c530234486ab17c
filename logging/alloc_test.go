package logging

import (
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The enqueue step allocates nothing: with room in the ring, when the ring
// is full (drop path), and when the access log is off.
func TestEnqueueAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	const runs = 1000
	w := newTestWriter(true)
	l := startLogger(t, Config{RingSize: 4 * runs, Access: true, SampleInitial: noSampling}, w)
	l.Access(&AccessEntry{})
	waitEntered(t, w) // the writer is parked in Write; everything below stays queued

	e := AccessEntry{
		Time: time.Now(), Listener: "main", Reason: "idle_timeout", Loop: 3,
		Client:   netip.MustParseAddrPort("127.0.0.1:50000"),
		Upstream: netip.MustParseAddrPort("[::1]:8080"),
		Connect:  time.Millisecond, Duration: time.Minute, BytesUp: 1, BytesDown: 2,
	}
	line := []byte(`{"level":"info","msg":"an encoded line"}` + "\n")
	check := func(name string, f func()) {
		t.Helper()
		if a := testing.AllocsPerRun(runs, f); a != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, a)
		}
	}
	check("Access with room", func() { l.Access(&e) })
	zapCheck := func(name string, f func()) {
		t.Helper()
		if !raceEnabled { // zap's pooled entries and buffers
			check(name, f)
		}
	}
	zapCheck("zap line with room", func() { l.Z().Info("static message") })
	check("line enqueue with room", func() { l.enqueueLine(line) })
	if l.Dropped() != 0 {
		t.Fatalf("dropped %d while the ring had room", l.Dropped())
	}
	for l.Dropped() == 0 { // fill the rest; bounded by the ring size
		l.Access(&e)
	}
	check("Access when full", func() { l.Access(&e) })
	zapCheck("zap line when full", func() { l.Z().Info("static message") })
	check("line enqueue when full", func() { l.enqueueLine(line) })
	// zap itself allocates the variadic []Field once it crosses the Core
	// interface; that is zap's cost, not the ring's.
	if a := testing.AllocsPerRun(runs, func() { l.Z().Info("m", zap.Int("loop", 3)) }); a > 1 && !raceEnabled {
		t.Errorf("zap line with a field: %v allocs/op, want at most 1", a)
	}
	l.SetAccess(false)
	check("Access when off", func() { l.Access(&e) })
}
