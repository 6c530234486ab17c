//go:build linux

package relay

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/internal/testnet"
)

// BenchmarkSessionsTask: what one GET /sessions costs a relay loop holding
// benchSessions open sessions — the task Sessions posts to each loop (a walk
// of its sessions and at most offset+limit copies), timed on the loop
// itself (loop-µs/op: the pause every other session on the loop sees),
// plus the whole call with the merge (ns/op). "none" matches nothing (the
// walk alone), page-100 and page-1000 copy that many.
func BenchmarkSessionsTask(b *testing.B) {
	const benchSessions = 3000 // 4 fds each in this process: under the 20,000-fd limit
	up := testnet.Serve(b, "tcp", "127.0.0.1:0", func(c net.Conn) { _, _ = c.(*net.TCPConn).ReadFrom(c) }).AddrPort()
	pool, err := connector.New(connector.Config{Workers: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pool.Close() })
	srv, err := New(Config{Loops: 1, Dialer: pool})
	if err != nil {
		b.Fatal(err)
	}
	addr, err := srv.AddListener(ListenerConfig{Name: "b", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: []netip.AddrPort{up}})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	for range benchSessions {
		c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if err := testnet.RoundTrip(c, "x"); err != nil {
			b.Fatal(err)
		}
	}
	if p := srv.Sessions(SessionQuery{Limit: 1}); p.Total != benchSessions {
		b.Fatalf("%d sessions open, want %d", p.Total, benchSessions)
	}
	l := srv.loops[0]
	for _, c := range []struct {
		name string
		q    SessionQuery
	}{
		{"none", SessionQuery{Upstream: netip.MustParseAddrPort("127.0.0.1:1"), Limit: 1000}},
		{"page-100", SessionQuery{Limit: 100}},
		{"page-1000", SessionQuery{Limit: 1000}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var onLoop time.Duration
			done := make(chan struct{})
			for b.Loop() {
				if err := l.ev.Post(func(any) {
					t0 := time.Now()
					l.sessionsWindow(&c.q, c.q.Limit)
					onLoop += time.Since(t0)
					done <- struct{}{}
				}, nil); err != nil {
					b.Fatal(err)
				}
				<-done
			}
			b.ReportMetric(float64(onLoop.Microseconds())/float64(b.N), "loop-µs/op")
			b.ReportMetric(0, "ns/op") // the post and wait: not what the loop pays
		})
	}
	b.Run("whole-call-page-1000", func(b *testing.B) {
		for b.Loop() {
			if p := srv.Sessions(SessionQuery{Limit: 1000}); len(p.Sessions) != 1000 {
				b.Fatalf("%d sessions", len(p.Sessions))
			}
		}
	})
}
