package admin

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

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

// BenchmarkSessionsPage is the admin side of one GET /sessions?limit=1000
// (the relay's answer given): conversion and JSON encoding, what a poll
// costs the process's CPUs beside the loops' own task (relay's
// BenchmarkSessionsTask).
func BenchmarkSessionsPage(b *testing.B) {
	var p relay.SessionsPage
	now := time.Now()
	for i := range 1000 {
		p.Sessions = append(p.Sessions, relay.SessionInfo{ID: uint64(i) + 1<<48, Listener: "main",
			Client:   netip.AddrPortFrom(netip.MustParseAddr("10.1.2.3"), uint16(10000+i)),
			Upstream: netip.MustParseAddrPort("10.9.8.7:8080"), State: "relaying", Began: now.Add(-time.Duration(i) * time.Second),
			Idle: time.Second, BytesUp: 123456, BytesDown: 7654321})
	}
	p.Total = 9000
	h := controlServer(b, &fakeControl{sessions: &p}, "").Handler()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		w := doReq(h, "GET", "/sessions?limit=1000", "", "")
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}
