package admin

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/relay"
)

// BenchmarkGather is the cost of one scrape's collection (no HTTP, no
// encoding) with 8 loops, 16 listeners and 2 connector workers: what a
// scrape takes from the process, off the data path.
func BenchmarkGather(b *testing.B) {
	st := fixedRelay()
	st.Loops = make([]relay.LoopStats, 8)
	st.Listeners = map[string]relay.ListenerStats{}
	for i := range 16 {
		st.Listeners[fmt.Sprint("l", i)] = relay.ListenerStats{
			Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(7000+i)), Closed: map[string]uint64{"eof": 1},
		}
	}
	src := fixedSources()
	src.Relay = func() relay.Stats { return st }
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src, "v0"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
