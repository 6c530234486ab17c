package logging

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Run: go test -run '^$' -bench . -benchtime 2s ./logging

func benchEntry() AccessEntry {
	return AccessEntry{
		Time:      time.Now(),
		Listener:  "main",
		Client:    netip.MustParseAddrPort("127.0.0.1:50000"),
		Upstream:  netip.MustParseAddrPort("127.0.0.1:8080"),
		Loop:      1,
		Connect:   180 * time.Microsecond,
		Duration:  1500 * time.Millisecond,
		BytesUp:   4096,
		BytesDown: 1 << 20,
		Reason:    "eof",
	}
}

func benchFile(b *testing.B) *os.File {
	b.Helper()
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "access.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

func benchRing(b *testing.B, ws zapcore.WriteSyncer) *Logger {
	b.Helper()
	l, err := NewWithWriter(Config{Access: true, FlushTimeout: time.Minute, SampleInitial: noSampling}, ws)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return l
}

// zapAccess logs an access entry through a plain zap logger with the same
// encoder and fields the ring's writer uses, so only the sink differs.
func zapAccess(lg *zap.Logger, am *accessMarshaler, e *AccessEntry) {
	if ce := lg.Check(zapcore.InfoLevel, AccessMessage); ce != nil {
		am.e = e
		ce.Time = e.Time
		ce.Write(zap.Inline(am))
	}
}

func newZap(ws zapcore.WriteSyncer) *zap.Logger {
	return zap.New(zapcore.NewCore(newEncoder("json"), ws, zapcore.InfoLevel)).Named(AccessLoggerName)
}

// BenchmarkAccessLog: cost of one access-log entry.
//
//	ring/enqueue      the enqueue step alone: the writer goroutine is parked
//	                  in a blocked Write and the benchmark empties the ring
//	                  outside the timer every half ring
//	ring/enqueue+writer what the relay loop pays with a live writer
//	                  draining to the file on the other core (the ring is
//	                  flushed outside the timer every half ring, so nothing
//	                  is dropped)
//	ring/end-to-end   Access plus the writer's encode and file write, timed
//	                  until flushed (the ring's throughput)
//	zap-file          zap writing each entry straight to the file
//	zap-buffered-file zap through zapcore.BufferedWriteSyncer (256 KiB)
func BenchmarkAccessLog(b *testing.B) {
	e := benchEntry()
	b.Run("ring/enqueue", func(b *testing.B) {
		w := newTestWriter(true)
		l := benchRing(b, w)
		b.Cleanup(w.open) // runs before benchRing's Close
		l.Access(&e)
		waitEntered(b, w)
		half := l.cfg.RingSize / 2
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Access(&e)
			if i++; i == half {
				i = 0
				b.StopTimer()
				// Act as the consumer while the writer is parked in Write.
				for s, ok := l.r.peek(); ok; s, ok = l.r.peek() {
					l.r.release(s)
				}
				b.StartTimer()
			}
		}
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
	})
	b.Run("ring/enqueue+writer", func(b *testing.B) {
		l := benchRing(b, benchFile(b))
		half := l.cfg.RingSize / 2
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Access(&e)
			if i++; i == half {
				i = 0
				b.StopTimer()
				if err := l.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		}
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
	})
	b.Run("ring/enqueue-parallel", func(b *testing.B) {
		l := benchRing(b, benchFile(b))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			e := benchEntry()
			for pb.Next() {
				l.Access(&e)
			}
		})
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
	})
	b.Run("ring/end-to-end", func(b *testing.B) {
		l := benchRing(b, benchFile(b))
		half := l.cfg.RingSize / 2
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Access(&e)
			if i++; i == half {
				i = 0
				if err := l.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := l.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
	})
	b.Run("zap-file", func(b *testing.B) {
		lg := newZap(benchFile(b))
		var am accessMarshaler
		b.ReportAllocs()
		for b.Loop() {
			zapAccess(lg, &am, &e)
		}
	})
	b.Run("zap-buffered-file", func(b *testing.B) {
		bws := &zapcore.BufferedWriteSyncer{WS: benchFile(b)}
		defer bws.Stop()
		lg := newZap(bws)
		var am accessMarshaler
		b.ReportAllocs()
		for b.Loop() {
			zapAccess(lg, &am, &e)
		}
		if err := bws.Sync(); err != nil {
			b.Fatal(err)
		}
	})
}

// stallingFile is a file on a disk that stalls: every Write takes at least
// 2 ms (think of a saturated disk or a throttled journald).
type stallingFile struct{ *os.File }

func (s stallingFile) Write(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return s.File.Write(p)
}

// BenchmarkAccessLogStalledOutput: the caller's cost when the output
// stalls. slow/Mop counts calls that took over 1 ms per million calls and
// max-ns is the slowest single call: what a relay loop would have waited.
// (On a busy machine the scheduler alone can produce a few slow calls.)
// The ring drops instead of waiting (drops/op).
func BenchmarkAccessLogStalledOutput(b *testing.B) {
	e := benchEntry()
	timed := func(b *testing.B, f func()) {
		var maxNs, slow int64
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			f()
			d := time.Since(t0).Nanoseconds()
			maxNs = max(maxNs, d)
			if d > int64(time.Millisecond) {
				slow++
			}
		}
		b.ReportMetric(float64(maxNs), "max-ns")
		b.ReportMetric(float64(slow)*1e6/float64(b.N), "slow/Mop")
	}
	b.Run("ring", func(b *testing.B) {
		l, err := NewWithWriter(Config{Access: true, FlushTimeout: time.Minute}, stallingFile{benchFile(b)})
		if err != nil {
			b.Fatal(err)
		}
		timed(b, func() { l.Access(&e) })
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
		b.StopTimer()
		if err := l.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("zap-file", func(b *testing.B) {
		lg := newZap(stallingFile{benchFile(b)})
		var am accessMarshaler
		timed(b, func() { zapAccess(lg, &am, &e) })
	})
	b.Run("zap-buffered-file", func(b *testing.B) {
		bws := &zapcore.BufferedWriteSyncer{WS: stallingFile{benchFile(b)}}
		defer bws.Stop()
		lg := newZap(bws)
		var am accessMarshaler
		timed(b, func() { zapAccess(lg, &am, &e) })
	})
}

// BenchmarkZapLine: an ordinary zap line with two fields through the ring
// (encoded on the caller, copied into a slot) vs. straight to a file.
func BenchmarkZapLine(b *testing.B) {
	b.Run("ring", func(b *testing.B) {
		l := benchRing(b, benchFile(b))
		lg := l.Z()
		half := l.cfg.RingSize / 2
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			lg.Warn("accept backoff", zap.Int("loop", 3), zap.Duration("delay", 5*time.Millisecond))
			if i++; i == half {
				i = 0
				b.StopTimer()
				_ = l.Flush(context.Background())
				b.StartTimer()
			}
		}
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "drops/op")
	})
	b.Run("zap-file", func(b *testing.B) {
		lg := zap.New(zapcore.NewCore(newEncoder("json"), benchFile(b), zapcore.InfoLevel))
		b.ReportAllocs()
		for b.Loop() {
			lg.Warn("accept backoff", zap.Int("loop", 3), zap.Duration("delay", 5*time.Millisecond))
		}
	})
}
