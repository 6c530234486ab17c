//go:build linux

package relay

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// A burst of buffer use followed by quiet is trimmed once; quiet without a
// burst is not; a burst of closed sessions is trimmed too.
func TestTrimAfterBurst(t *testing.T) {
	in := startInjected(t, []netip.AddrPort{echoUpstream(t)}, func(c *Config, _ *ListenerConfig) {})
	s := in.srv
	// startInjected has started the trimmer with the 5 s default: run a
	// second one, fast, on the same counters.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); s.trimmer(stop, 20*time.Millisecond) }()
	t.Cleanup(func() { close(stop); <-done })
	base := s.trims.Load()
	var bufs []*[]byte
	for range trimMinGets {
		bufs = append(bufs, s.getBuf())
	}
	for _, b := range bufs {
		s.putBuf(b)
	}
	waitCond(t, "a trim after the burst", func() bool { return s.trims.Load() == base+1 })
	// No buffers taken since: several more looks, no second trim. The
	// trimmer's own clock decides; this waits for it to have looked.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if s.trims.Load() != base+1 {
			t.Fatalf("%d trims without a new burst", s.trims.Load()-base)
		}
		time.Sleep(5 * time.Millisecond) // the poll interval of a bounded observation
	}
	for range trimMinGets {
		c, err := net.Dial("tcp", in.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitCond(t, "a trim after the closes", func() bool { return s.trims.Load() == base+2 })
}
