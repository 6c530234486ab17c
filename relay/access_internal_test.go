//go:build linux

package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/relayd/relayd/internal/testnet"
	"github.com/relayd/relayd/logging"
)

// lineBuffer collects log output for a test.
type lineBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lineBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
func (w *lineBuffer) Sync() error { return nil }

// accessLine is what the test reads of an access line.
type accessLine struct {
	Msg        string   `json:"msg"`
	DurationMS float64  `json:"duration_ms"`
	BytesUp    uint64   `json:"bytes_up"`
	BytesDown  uint64   `json:"bytes_down"`
	Reason     *string  `json:"reason"`
	Upstream   string   `json:"upstream"`
	ConnectMS  *float64 `json:"connect_ms"`
}

// access flushes the log and returns its access lines so far.
func (w *lineBuffer) access(t *testing.T, log *logging.Logger) []accessLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []accessLine
	for _, l := range strings.Split(strings.TrimSpace(w.b.String()), "\n") {
		if !strings.Contains(l, `"logger":"access"`) {
			continue
		}
		var a accessLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, a)
	}
	return out
}

// With log.access_on_connect and log.access_interval, a session gets a
// start line when its upstream connects, an interim line (bytes so far)
// each time it is another interval older — on the injected clock, so
// exactly at the interval, and once for a stretch of several missed
// intervals — then the end line with its reason. A reload that turns the
// interval off stops the interim lines of the open session at once; one
// that turns it on starts them at the next multiple of the interval.
func TestAccessStartAndInterimRecords(t *testing.T) {
	out := &lineBuffer{}
	log, err := logging.NewWithWriter(logging.Config{Access: true}, zapcore.AddSync(out))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	up := testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) { _, _ = c.(*net.TCPConn).ReadFrom(c) }).AddrPort()
	in := startInjected(t, []netip.AddrPort{up}, func(c *Config, _ *ListenerConfig) {
		c.Log, c.AccessInterval, c.AccessOnConnect = log, time.Minute, true
	})
	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := testnet.RoundTrip(c, "ping"); err != nil { // relaying now
		t.Fatal(err)
	}
	lines := out.access(t, log)
	if len(lines) != 1 || lines[0].Msg != "session_start" || lines[0].Reason != nil || lines[0].Upstream != up.String() || lines[0].ConnectMS == nil {
		t.Fatalf("after the connect: %+v", lines)
	}
	in.advance(t, time.Minute-10*time.Millisecond)
	if n := len(out.access(t, log)); n != 1 {
		t.Fatalf("%d lines before the first interval", n)
	}
	in.advance(t, 10*time.Millisecond)
	lines = out.access(t, log)
	if len(lines) != 2 || lines[1].Msg != "session_interim" || lines[1].Reason != nil || lines[1].BytesUp != 4 || lines[1].BytesDown != 4 ||
		lines[1].DurationMS < 60000 || lines[1].DurationMS > 60100 {
		t.Fatalf("at one interval: %+v", lines)
	}
	if err := testnet.RoundTrip(c, "pong pong"); err != nil {
		t.Fatal(err)
	}
	// Three intervals at once (a busy loop, a stopped clock): one line.
	in.advance(t, 3*time.Minute)
	lines = out.access(t, log)
	if len(lines) != 3 || lines[2].Msg != "session_interim" || lines[2].BytesUp != 13 || lines[2].BytesDown != 13 {
		t.Fatalf("after three intervals: %+v", lines)
	}
	// The next is due at 5 min, not 4 min after the late one.
	in.advance(t, time.Minute-10*time.Millisecond)
	if n := len(out.access(t, log)); n != 3 {
		t.Fatalf("%d lines before 5 min", n)
	}
	in.advance(t, 10*time.Millisecond)
	if n := len(out.access(t, log)); n != 4 {
		t.Fatalf("%d lines at 5 min", n)
	}
	if err := testnet.RoundTrip(c, "x"); err != nil { // not idle until 10 min
		t.Fatal(err)
	}
	in.srv.SetAccessRecords(0, false)
	in.advance(t, 3*time.Minute)
	if n := len(out.access(t, log)); n != 4 {
		t.Fatalf("%d lines after interim records were turned off: %+v", n, out.access(t, log))
	}
	// On again (a reload), at 30 s: the open session's next line is due at
	// the next multiple of 30 s of its age (8m30s), not at once.
	in.srv.SetAccessRecords(30*time.Second, false)
	if n := len(out.access(t, log)); n != 4 {
		t.Fatalf("%d lines when interim records were turned on", n)
	}
	in.advance(t, 30*time.Second)
	if lines = out.access(t, log); len(lines) != 5 || lines[4].Msg != "session_interim" || lines[4].DurationMS < 510000 || lines[4].DurationMS > 510100 {
		t.Fatalf("after the interval was turned on: %+v", lines)
	}
	_ = c.Close()
	waitCond(t, "the session closed", func() bool { return in.active() == 0 })
	lines = out.access(t, log)
	if len(lines) != 6 || lines[5].Msg != "session" || lines[5].Reason == nil || *lines[5].Reason != "eof" || lines[5].BytesUp != 14 {
		t.Fatalf("the end: %+v", lines)
	}
}
