package loadtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
)

// BenchmarkRRDirect measures the generator's own ceiling: rr sessions of 64
// bytes, 50 at once, against a sink in a child process (so the two do not
// share a Go runtime). It reports sessions/s and the RTT p99.
func BenchmarkRRDirect(b *testing.B) {
	addr, _ := startChildSink(b, SinkEcho)
	b.ReportAllocs()
	b.ResetTimer()
	res := run(b, LoadConfig{Target: addr, Sessions: max(b.N, 50), Concurrency: 50})
	b.StopTimer()
	if res.ErrorsTotal != 0 {
		b.Fatalf("errors: %v", res.Errors)
	}
	b.ReportMetric(res.SessionsPerSec, "sessions/s")
	b.ReportMetric(float64(res.RTT.P99.Microseconds()), "p99-µs")
}

// BenchmarkBulkDirect measures the generator's bulk ceiling (both ways,
// 2 streams, 2 s) against a child-process echo sink.
func BenchmarkBulkDirect(b *testing.B) {
	addr, _ := startChildSink(b, SinkEcho)
	b.ReportAllocs()
	for range b.N {
		res := run(b, LoadConfig{Target: addr, Mode: ModeBulk, Streams: 2, Direction: DirBoth, Duration: 2 * time.Second})
		if res.ErrorsTotal != 0 {
			b.Fatalf("errors: %v", res.Errors)
		}
		b.ReportMetric(res.BitsPerSec/1e9, "Gbit/s")
	}
}

// BenchmarkDialNetDialer and BenchmarkDialNetpoll compare the two
// non-blocking dialers for the connector: connect + close, one at a time
// (smtp-source pacing), against a child-process sink.
func BenchmarkDialNetDialer(b *testing.B) {
	addr, _ := startChildSink(b, SinkDiscard)
	d := net.Dialer{Timeout: 5 * time.Second}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func BenchmarkDialNetpoll(b *testing.B) {
	addr, _ := startChildSink(b, SinkDiscard)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := netpoll.DialConnection("tcp", addr, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
