package loadtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/testnet"
)

// startSink starts an in-process sink on 127.0.0.1 and closes it at cleanup.
func startSink(t testing.TB, mode string) *Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := StartSink(ctx, SinkConfig{Listen: "127.0.0.1:0", Mode: mode, Loops: 2})
	if err != nil {
		t.Fatalf("StartSink(%s): %v", mode, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("sink close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second sink close: %v", err)
		}
	})
	return s
}

func run(t testing.TB, cfg LoadConfig) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run(%+v): %v", cfg, err)
	}
	return res
}

func waitIdle(t testing.TB, s *Sink, accepted uint64) SinkStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := s.WaitIdle(ctx, accepted)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func noErrors(t testing.TB, res *Result) {
	t.Helper()
	if res.ErrorsTotal != 0 {
		t.Fatalf("errors: %v", res.Errors)
	}
	if len(res.Errors) != len(ErrorKinds) {
		t.Fatalf("errors map has %d kinds, want all %d: %v", len(res.Errors), len(ErrorKinds), res.Errors)
	}
}

func TestRRExact(t *testing.T) {
	for _, tc := range []struct {
		name, mode, banner string
		size, conc, n      int
	}{
		{"echo-64", SinkEcho, "", 64, 20, 500},
		{"echo-100k", SinkEcho, "", 100_000, 4, 40},
		{"banner", SinkBanner, DefaultBanner, 64, 8, 100},
		{"one-worker", SinkEcho, "", 1, 1, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSink(t, tc.mode)
			res := run(t, LoadConfig{Target: s.Addr(), Mode: ModeRR, Sessions: tc.n, Concurrency: tc.conc, Size: tc.size, ExpectBanner: tc.banner})
			noErrors(t, res)
			if res.Sessions != uint64(tc.n) || res.Attempts != uint64(tc.n) {
				t.Fatalf("sessions %d attempts %d, want %d", res.Sessions, res.Attempts, tc.n)
			}
			wantOut := uint64(tc.n * tc.size)
			wantIn := wantOut + uint64(tc.n*len(tc.banner))
			if res.BytesSent != wantOut || res.BytesReceived != wantIn {
				t.Fatalf("client bytes sent %d received %d, want %d/%d", res.BytesSent, res.BytesReceived, wantOut, wantIn)
			}
			st := waitIdle(t, s, uint64(tc.n))
			if st.Accepted != uint64(tc.n) || st.BytesIn != wantOut || st.BytesOut != wantIn {
				t.Fatalf("sink %+v, want accepted %d in %d out %d", st, tc.n, wantOut, wantIn)
			}
			if res.Connect.Count != int64(tc.n) || res.RTT.Count != int64(tc.n) || res.TTFB.Count != int64(tc.n) {
				t.Fatalf("histogram counts connect %d rtt %d ttfb %d", res.Connect.Count, res.RTT.Count, res.TTFB.Count)
			}
			if !(res.RTT.P50 > 0 && res.RTT.P50 <= res.RTT.P99 && res.RTT.P99 <= res.RTT.Max) {
				t.Fatalf("rtt percentiles not ordered: %+v", res.RTT)
			}
		})
	}
}

// Keep-alive rr: every session makes exactly --requests round trips on one
// connection, each verified and recorded; the sink sees one connection per
// session and every byte.
func TestRRRequestsKeepAlive(t *testing.T) {
	s := startSink(t, SinkEcho)
	const n, reqs, size = 12, 25, 100
	res := run(t, LoadConfig{Target: s.Addr(), Mode: ModeRR, Sessions: n, Concurrency: 4, Size: size, Requests: reqs})
	noErrors(t, res)
	if res.Sessions != n || res.Requests != n*reqs || res.RTT.Count != n*reqs || res.Connect.Count != n {
		t.Fatalf("sessions %d requests %d rtt samples %d connects %d, want %d/%d/%d/%d",
			res.Sessions, res.Requests, res.RTT.Count, res.Connect.Count, n, n*reqs, n*reqs, n)
	}
	st := waitIdle(t, s, n)
	if st.Accepted != n || st.BytesIn != n*reqs*size || res.BytesReceived != n*reqs*size {
		t.Fatalf("sink %+v, client received %d: want %d connections and %d bytes", st, res.BytesReceived, n, n*reqs*size)
	}
	if err := (LoadConfig{Target: s.Addr(), Mode: ModeBulk, Requests: 2}).Validate(); err == nil {
		t.Fatal("--requests accepted for bulk")
	}
}

func TestRRDuration(t *testing.T) {
	s := startSink(t, SinkEcho)
	res := run(t, LoadConfig{Target: s.Addr(), Duration: 300 * time.Millisecond, Concurrency: 4})
	noErrors(t, res)
	if res.Sessions == 0 || res.Elapsed < 300*time.Millisecond {
		t.Fatalf("sessions %d elapsed %v", res.Sessions, res.Elapsed)
	}
	st := waitIdle(t, s, res.Sessions)
	if st.Accepted != res.Sessions || st.BytesIn != res.Sessions*DefaultSize {
		t.Fatalf("sink %+v for %d sessions", st, res.Sessions)
	}
}

func TestStormExact(t *testing.T) {
	s := startSink(t, SinkDiscard)
	res := run(t, LoadConfig{Target: s.Addr(), Mode: ModeStorm, Sessions: 400, Concurrency: 32})
	noErrors(t, res)
	if res.Sessions != 400 || res.Connect.Count != 400 {
		t.Fatalf("sessions %d connects %d", res.Sessions, res.Connect.Count)
	}
	if st := waitIdle(t, s, 400); st.Accepted != 400 || st.BytesIn != 0 {
		t.Fatalf("sink %+v", st)
	}
}

func TestIdleExact(t *testing.T) {
	s := startSink(t, SinkEcho)
	const n = 300
	res := run(t, LoadConfig{Target: s.Addr(), Mode: ModeIdle, Sessions: n, Size: 16, PID: os.Getpid()})
	noErrors(t, res)
	if res.Sessions != n || res.BytesReceived != n*16 || res.RTT.Count != n {
		t.Fatalf("sessions %d received %d rtt count %d", res.Sessions, res.BytesReceived, res.RTT.Count)
	}
	if res.SelfRSSBefore == 0 || res.SelfRSSAfter == 0 || res.TargetRSSAfter == 0 || res.IdleOpenTime <= 0 {
		t.Fatalf("idle fields not filled: %+v", res)
	}
	// All sessions were held at once: the sink saw n opens and, after Run,
	// n closes.
	if st := waitIdle(t, s, n); st.Accepted != n || st.BytesIn != n*16 || st.BytesOut != n*16 {
		t.Fatalf("sink %+v", st)
	}
}

// TestBannerModes: idle, storm and bulk read and verify the greeting first.
func TestBannerModes(t *testing.T) {
	s := startSink(t, SinkBanner)
	b := uint64(len(DefaultBanner))
	idle := run(t, LoadConfig{Target: s.Addr(), Mode: ModeIdle, Sessions: 20, Size: 8, ExpectBanner: DefaultBanner})
	noErrors(t, idle)
	storm := run(t, LoadConfig{Target: s.Addr(), Mode: ModeStorm, Sessions: 20, ExpectBanner: DefaultBanner})
	noErrors(t, storm)
	bulk := run(t, LoadConfig{Target: s.Addr(), Mode: ModeBulk, Direction: DirBoth, Duration: 200 * time.Millisecond, ExpectBanner: DefaultBanner})
	noErrors(t, bulk)
	if idle.Sessions != 20 || idle.BytesReceived != 20*(b+8) || storm.Sessions != 20 || storm.BytesReceived != 20*b || storm.TTFB.Count != 20 {
		t.Fatalf("idle %d/%d B, storm %d/%d B", idle.Sessions, idle.BytesReceived, storm.Sessions, storm.BytesReceived)
	}
	if bulk.Sessions != 1 || bulk.BytesSent == 0 || bulk.BytesReceived != bulk.BytesSent {
		t.Fatalf("bulk sent %d received %d", bulk.BytesSent, bulk.BytesReceived)
	}
	// A wrong greeting is a mismatch in every mode.
	bad := run(t, LoadConfig{Target: s.Addr(), Mode: ModeStorm, Sessions: 3, ExpectBanner: "999 nope\r\n"})
	if bad.Errors[KindMismatch] != 3 {
		t.Fatalf("wrong banner: %v", bad.Errors)
	}
	st := waitIdle(t, s, 20+20+1+3)
	if st.Accepted != 44 {
		t.Fatalf("sink %+v", st)
	}
}

// TestIdleHeld proves idle mode holds every session simultaneously: when
// the last one is proven, the sink has n accepted and none closed.
func TestIdleHeld(t *testing.T) {
	s := startSink(t, SinkEcho)
	const n = 100
	var during SinkStats
	testHookIdleHeld = func() { during = s.Stats() }
	t.Cleanup(func() { testHookIdleHeld = nil })
	res := run(t, LoadConfig{Target: s.Addr(), Mode: ModeIdle, Sessions: n, Duration: 10 * time.Millisecond})
	noErrors(t, res)
	if during.Accepted != n || during.Closed != 0 {
		t.Fatalf("while held: %+v", during)
	}
	if st := waitIdle(t, s, n); st.Closed != n {
		t.Fatalf("after: %+v", st)
	}
}

func TestBulk(t *testing.T) {
	for _, tc := range []struct{ dir, sink string }{
		{DirUp, SinkDiscard}, {DirBoth, SinkEcho}, {DirDown, SinkSource},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			s := startSink(t, tc.sink)
			res := run(t, LoadConfig{Target: s.Addr(), Mode: ModeBulk, Streams: 2, Direction: tc.dir, Duration: 300 * time.Millisecond})
			noErrors(t, res)
			if res.Sessions != 2 || len(res.Streams) != 2 {
				t.Fatalf("sessions %d streams %d", res.Sessions, len(res.Streams))
			}
			st := waitIdle(t, s, 2)
			switch tc.dir {
			case DirUp:
				if res.BytesSent == 0 || st.BytesIn != res.BytesSent || res.BytesReceived != 0 {
					t.Fatalf("sent %d, sink got %d", res.BytesSent, st.BytesIn)
				}
			case DirBoth:
				if res.BytesSent == 0 || res.BytesReceived != res.BytesSent || st.BytesIn != res.BytesSent || st.BytesOut != res.BytesSent {
					t.Fatalf("sent %d received %d sink %+v", res.BytesSent, res.BytesReceived, st)
				}
			case DirDown:
				if res.BytesReceived == 0 || st.BytesOut < res.BytesReceived {
					t.Fatalf("received %d sink sent %d", res.BytesReceived, st.BytesOut)
				}
			}
			// Per stream: no error, and its bytes add up to the total. How
			// many bytes each moved in 300 ms is the machine's business (a
			// loaded machine may start one stream late); the totals above
			// are exact.
			var sent, rcvd uint64
			for i, sr := range res.Streams {
				if sr.Error != "" {
					t.Fatalf("stream %d: %+v", i, sr)
				}
				sent, rcvd = sent+sr.BytesSent, rcvd+sr.BytesReceived
			}
			if sent != res.BytesSent || rcvd != res.BytesReceived {
				t.Fatalf("streams add up to %d/%d bytes, the result says %d/%d", sent, rcvd, res.BytesSent, res.BytesReceived)
			}
		})
	}
}

// freePort returns a loopback address nothing listens on.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fullBacklog returns the address of a listener whose connects time out.
func fullBacklog(t testing.TB) string { return testnet.HangingAddr(t).String() }

// resetter accepts, reads the request and closes with SO_LINGER 0, so the
// client sees a reset.
func resetter(t testing.TB) string {
	t.Helper()
	return testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.ReadFull(c, make([]byte, 1))
		_ = c.(*net.TCPConn).SetLinger(0)
	}).Addr().String()
}

// liar echoes every byte but the last one flipped, or closes early.
func liar(t testing.TB, short bool) string {
	t.Helper()
	return testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		buf := make([]byte, DefaultSize)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, buf); err == nil {
			if short {
				buf = buf[:len(buf)/2]
			} else {
				buf[len(buf)-1] ^= 0xff
			}
			_, _ = c.Write(buf)
		}
	}).Addr().String()
}

func TestErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target func(testing.TB) string
		kind   string
	}{
		{"refused", freePort, KindRefused},
		{"timeout", fullBacklog, KindTimeout},
		{"reset", resetter, KindReset},
		{"mismatch", func(t testing.TB) string { return liar(t, false) }, KindMismatch},
		{"short", func(t testing.TB) string { return liar(t, true) }, KindShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 3
			res := run(t, LoadConfig{Target: tc.target(t), Sessions: n, Concurrency: 1, ConnectTimeout: 300 * time.Millisecond})
			if res.Sessions != 0 || res.ErrorsTotal != n || res.Errors[tc.kind] != n {
				t.Fatalf("want %d %s errors, got ok=%d errors=%v", n, tc.kind, res.Sessions, res.Errors)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{unix.ECONNREFUSED, KindRefused},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", unix.ECONNREFUSED)}, KindRefused},
		{unix.ETIMEDOUT, KindTimeout},
		{context.DeadlineExceeded, KindTimeout},
		{os.ErrDeadlineExceeded, KindTimeout},
		{unix.ECONNRESET, KindReset},
		{unix.EPIPE, KindReset},
		{unix.EADDRNOTAVAIL, KindAddrNotAvail},
		{ErrMismatch, KindMismatch},
		{io.ErrUnexpectedEOF, KindShort},
		{ErrShort, KindShort},
		{errors.New("x"), KindOther},
	} {
		if got := Classify(tc.err); got != tc.kind {
			t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.kind)
		}
	}
}

func TestPacingMaxInflightOne(t *testing.T) {
	s := startSink(t, SinkEcho)
	var calls, over atomic.Int64
	testHookConnecting = func(n int64) {
		calls.Add(1)
		if n > 1 {
			over.Add(1)
		}
	}
	t.Cleanup(func() { testHookConnecting = nil })
	const n = 300
	res := run(t, LoadConfig{Target: s.Addr(), Sessions: n, Concurrency: 32, MaxInflightConnects: 1})
	noErrors(t, res)
	if calls.Load() != n || over.Load() != 0 || res.MaxInflightConnectsSeen != 1 {
		t.Fatalf("hook calls %d, over-limit %d, high water %d", calls.Load(), over.Load(), res.MaxInflightConnectsSeen)
	}
}

// TestPacingCounterWorks shows the in-flight counter can see more than one
// connect: without a cap, the hook holds connects until four are
// outstanding together.
func TestPacingCounterWorks(t *testing.T) {
	s := startSink(t, SinkEcho)
	const k = 4
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	arrived := 0
	testHookConnecting = func(int64) {
		mu.Lock()
		defer mu.Unlock()
		arrived++
		cond.Broadcast()
		for arrived < k {
			cond.Wait()
		}
	}
	t.Cleanup(func() { testHookConnecting = nil })
	res := run(t, LoadConfig{Target: s.Addr(), Sessions: k, Concurrency: k})
	noErrors(t, res)
	if res.MaxInflightConnectsSeen != k {
		t.Fatalf("high water %d, want %d", res.MaxInflightConnectsSeen, k)
	}
	// The same barrier with a cap of 2 would deadlock, so check the cap
	// with a hook that only counts.
	var over atomic.Int64
	testHookConnecting = func(n int64) {
		if n > 2 {
			over.Add(1)
		}
	}
	res = run(t, LoadConfig{Target: s.Addr(), Sessions: 200, Concurrency: 16, MaxInflightConnects: 2})
	noErrors(t, res)
	if over.Load() != 0 || res.MaxInflightConnectsSeen > 2 {
		t.Fatalf("cap 2: over %d, high water %d", over.Load(), res.MaxInflightConnectsSeen)
	}
}

func TestConnectRate(t *testing.T) {
	s := startSink(t, SinkEcho)
	// 20 connects at 100/s need at least 190 ms (the first is free).
	res := run(t, LoadConfig{Target: s.Addr(), Mode: ModeStorm, Sessions: 20, Concurrency: 20, ConnectRate: 100})
	noErrors(t, res)
	if res.Elapsed < 190*time.Millisecond {
		t.Fatalf("20 connects at 100/s took %v", res.Elapsed)
	}
}

func TestSourceIPs(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	ln := testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		mu.Lock()
		seen[c.RemoteAddr().(*net.TCPAddr).IP.String()]++
		mu.Unlock()
		_, _ = io.Copy(c, c)
	})
	res := run(t, LoadConfig{Target: ln.Addr().String(), Sessions: 30, Concurrency: 3, SourceIPs: "127.0.0.2-127.0.0.4"})
	noErrors(t, res)
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"127.0.0.2": 10, "127.0.0.3": 10, "127.0.0.4": 10}
	if len(seen) != 3 || seen["127.0.0.2"] != 10 || seen["127.0.0.3"] != 10 || seen["127.0.0.4"] != 10 {
		t.Fatalf("source addresses %v, want %v", seen, want)
	}
}

func TestParseSourceIPs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		fail bool
	}{
		{"", 0, false}, {"127.0.0.2", 1, false}, {"127.0.0.2-127.0.0.50", 49, false},
		{"127.0.0.2, 127.0.0.9", 2, false}, {"127.0.0.255-127.0.1.1", 3, false},
		{"127.0.0.5-127.0.0.2", 0, true}, {"x", 0, true}, {"127.0.0.1-::1", 0, true},
		{"10.0.0.0-10.2.0.0", 0, true},
	} {
		got, err := ParseSourceIPs(tc.in)
		if (err != nil) != tc.fail || len(got) != tc.n {
			t.Errorf("ParseSourceIPs(%q) = %d addrs, %v; want %d, fail=%v", tc.in, len(got), err, tc.n, tc.fail)
		}
		if tc.fail && !errors.Is(err, ErrBadConfig) {
			t.Errorf("ParseSourceIPs(%q) error %v does not wrap ErrBadConfig", tc.in, err)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, cfg := range []LoadConfig{
		{Target: "nohostport"},
		{Target: "127.0.0.1:1", Mode: "nope"},
		{Target: "127.0.0.1:1", Mode: ModeIdle},
		{Target: "127.0.0.1:1", Mode: ModeStorm},
		{Target: "127.0.0.1:1", Direction: "sideways"},
		{Target: "127.0.0.1:1", Concurrency: -1},
		{Target: "127.0.0.1:1", SourceIPs: "bad"},
	} {
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("Run(%+v) = %v, want ErrBadConfig", cfg, err)
		}
	}
	if _, err := StartSink(context.Background(), SinkConfig{Listen: "127.0.0.1:0", Mode: "nope"}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("StartSink bad mode: %v", err)
	}
}

func TestPattern(t *testing.T) {
	for _, off := range []uint64{0, 1, 250, 251, 1 << 33} {
		b := patternSlice(off, 1000)
		for i := range b {
			if b[i] != PatternAt(off+uint64(i)) {
				t.Fatalf("patternSlice(%d)[%d] = %d, want %d", off, i, b[i], PatternAt(off+uint64(i)))
			}
		}
		if !patternCheck(off, b) || patternCheck(off+1, b) {
			t.Fatalf("patternCheck at %d", off)
		}
	}
}

// Off a terminal (a pipe or a file, as under CI) the progress is the
// interval report, one line every Interval, with bytes and Gbit/s for bulk;
// --progress=off (ProgressMode "off") writes nothing.
func TestProgressOffTerminal(t *testing.T) {
	file := func() *os.File {
		f, err := os.CreateTemp(t.TempDir(), "progress")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if isTerminal(f) {
			t.Fatal("a regular file counted as a terminal")
		}
		return f
	}
	read := func(f *os.File) string {
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	echo, discard := startSink(t, SinkEcho), startSink(t, SinkDiscard)
	f := file()
	noErrors(t, run(t, LoadConfig{Target: echo.Addr(), Sessions: 200, Concurrency: 2, Progress: f, Interval: 20 * time.Millisecond}))
	if out := read(f); !strings.Contains(out, "load: rr ") || !strings.Contains(out, " ok/s ") || !strings.Contains(out, " p99 ") {
		t.Fatalf("rr progress off a terminal: %q", out)
	}
	f = file()
	noErrors(t, run(t, LoadConfig{Target: discard.Addr(), Mode: ModeBulk, Direction: DirUp, Duration: 300 * time.Millisecond, Progress: f, Interval: 20 * time.Millisecond}))
	if out := read(f); !strings.Contains(out, "load: bulk ") || !strings.Contains(out, " moved ") || !strings.Contains(out, "Gbit/s") {
		t.Fatalf("bulk progress off a terminal: %q", out)
	}
	f = file()
	noErrors(t, run(t, LoadConfig{Target: echo.Addr(), Sessions: 200, Concurrency: 2, Progress: f, ProgressMode: "off", Interval: 10 * time.Millisecond}))
	if out := read(f); out != "" {
		t.Fatalf("--progress=off wrote %q", out)
	}
}

// TestRRLargePayloadBackpressure: an echo peer that stops reading while its
// writes are blocked (io.Copy, like a relay with backpressure) must not
// deadlock an rr session whose payload exceeds all socket buffers.
func TestRRLargePayloadBackpressure(t *testing.T) {
	ln := testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		// Small fixed buffers here, so what the path can hold is
		// well below the payload whatever the client's autotuning.
		_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
		_ = c.(*net.TCPConn).SetWriteBuffer(64 << 10)
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(c, c)
	})
	const size = 16 << 20
	res := run(t, LoadConfig{Target: ln.Addr().String(), Sessions: 2, Concurrency: 2, Size: size, IOTimeout: 20 * time.Second})
	noErrors(t, res)
	if res.Sessions != 2 || res.BytesSent != 2*size || res.BytesReceived != 2*size {
		t.Fatalf("sessions %d sent %d received %d", res.Sessions, res.BytesSent, res.BytesReceived)
	}
}

// An open-loop run keeps its schedule: every session due is started, its
// latency counts from when it was due, and a rate the machine can give is
// not reported short.
func TestOpenLoopSchedule(t *testing.T) {
	echo := startSink(t, SinkEcho)
	res := run(t, LoadConfig{Target: echo.Addr(), Rate: 200, Sessions: 200})
	noErrors(t, res)
	if res.Sessions != 200 || res.Rate != 200 || res.RateShortfall != "" || res.Latency.Count != 200 || res.Wait.Count != 200 {
		t.Fatalf("sessions %d rate %v shortfall %q latency %d wait %d", res.Sessions, res.Rate, res.RateShortfall, res.Latency.Count, res.Wait.Count)
	}
	if err := res.CheckThresholds(Thresholds{}); err != nil {
		t.Fatal(err)
	}
	if res.Latency.P50 < res.RTT.P50 {
		t.Fatalf("session latency p50 %v below its round trip's %v", res.Latency.P50, res.RTT.P50)
	}
}

// A rate the run cannot reach — here, because only 4 sessions may be
// outstanding — is said in the result and fails the thresholds, and the
// sessions it held up carry their wait in their latency (coordinated
// omission corrected, not hidden).
func TestOpenLoopShortfall(t *testing.T) {
	echo := startSink(t, SinkEcho)
	res := run(t, LoadConfig{Target: echo.Addr(), Rate: 1e6, Sessions: 3000, Concurrency: 4})
	noErrors(t, res)
	if res.Sessions != 3000 || res.RateShortfall == "" || !strings.Contains(res.RateShortfall, "--concurrency cap") {
		t.Fatalf("sessions %d shortfall %q", res.Sessions, res.RateShortfall)
	}
	err := res.CheckThresholds(Thresholds{MaxErrors: 0})
	if !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), "rate not reached") {
		t.Fatalf("thresholds: %v", err)
	}
	if res.Wait.P99 < time.Millisecond || res.Latency.P99 < res.Wait.P99 {
		t.Fatalf("wait p99 %v latency p99 %v: the held-up sessions' wait is missing", res.Wait.P99, res.Latency.P99)
	}
}

// Open-loop settings a run would misread are refused.
func TestOpenLoopValidate(t *testing.T) {
	for _, c := range []LoadConfig{
		{Target: "127.0.0.1:1", Rate: -1},
		{Target: "127.0.0.1:1", Rate: 10, Mode: ModeBulk},
		{Target: "127.0.0.1:1", Rate: 10, Mode: ModeIdle, Sessions: 3},
		{Target: "127.0.0.1:1", Interval: time.Millisecond},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

// Interval reports: one per Interval, their sessions adding up to the
// run's, each with its latency histogram.
func TestIntervals(t *testing.T) {
	echo := startSink(t, SinkEcho)
	var lines bytes.Buffer
	res := run(t, LoadConfig{Target: echo.Addr(), Rate: 400, Duration: 600 * time.Millisecond, Interval: 100 * time.Millisecond, IntervalsJSON: &lines})
	noErrors(t, res)
	var sum uint64
	for _, iv := range res.Intervals {
		sum += iv.Sessions
		if iv.Sessions > 0 && (iv.Hist == "" || iv.P99 <= 0) {
			t.Fatalf("interval %+v has no latency", iv)
		}
	}
	if sum != res.Sessions || len(res.Intervals) < 6 {
		t.Fatalf("%d intervals add up to %d sessions, the run had %d", len(res.Intervals), sum, res.Sessions)
	}
	if n := strings.Count(lines.String(), "\n"); n != len(res.Intervals) || strings.Contains(lines.String(), `"hist"`) {
		t.Fatalf("%d JSON interval lines for %d intervals:\n%s", n, len(res.Intervals), lines.String())
	}
	var log bytes.Buffer
	if err := res.WriteHistLog(&log); err != nil {
		t.Fatal(err)
	}
	rd := hdrhistogram.NewHistogramLogReader(&log)
	var total int64
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		total += h.TotalCount()
	}
	if uint64(total) != res.Attempts {
		t.Fatalf("the histogram log holds %d sessions, the run %d", total, res.Attempts)
	}
}

// Open-loop keep-alive (wrk2's own model): R round trips a second over
// the persistent connections, each due on its connection's schedule and
// its latency counted from then; connections that cannot carry the rate
// (here a peer that answers each request 20 ms late) are reported short,
// and the latency shows the requests' wait, not just their round trips.
func TestOpenLoopKeepAlive(t *testing.T) {
	echo := startSink(t, SinkEcho)
	// 100/s over 4 connections: 40 ms for each round trip, kept by a
	// -race build on a loaded machine.
	res := run(t, LoadConfig{Target: echo.Addr(), Rate: 100, Requests: 1000, Concurrency: 4, Duration: 500 * time.Millisecond})
	noErrors(t, res)
	if res.Requests == 0 || res.Requests > 50 || uint64(res.Latency.Count) != res.Requests || uint64(res.RTT.Count) != res.Requests || res.RateShortfall != "" {
		t.Fatalf("requests %d (at most 50 due), latency %d rtt %d, shortfall %q", res.Requests, res.Latency.Count, res.RTT.Count, res.RateShortfall)
	}
	slow := testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			<-time.After(20 * time.Millisecond) // the peer's fixed think time, the thing under test
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	res = run(t, LoadConfig{Target: slow.Addr().String(), Rate: 1000, Requests: 1000, Concurrency: 2, Duration: time.Second})
	noErrors(t, res)
	if !strings.Contains(res.RateShortfall, "connections could not carry it") {
		t.Fatalf("2 connections of 20 ms round trips carried %v requests/s of 1000: shortfall %q", res.RequestsPerSec, res.RateShortfall)
	}
	if res.Latency.P99 < 10*res.RTT.P50 {
		t.Fatalf("latency p99 %v, round trip p50 %v: the requests' wait is missing", res.Latency.P99, res.RTT.P50)
	}
}
