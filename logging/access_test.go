package logging

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// An access line parses back as JSON with the documented field names and
// exact values; strings an attacker might influence stay on one line.
func TestAccessJSONFields(t *testing.T) {
	w := newTestWriter(false)
	l := startLogger(t, Config{Access: true}, w)
	end := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)
	evil := "lst\"\n\x00\u2028</script>\xff"
	l.Access(&AccessEntry{
		Time:      end,
		Listener:  evil,
		Client:    netip.MustParseAddrPort("127.0.0.1:40000"),
		Upstream:  netip.MustParseAddrPort("[::1]:8080"),
		Loop:      7,
		Connect:   1500 * time.Microsecond,
		Duration:  2500 * time.Millisecond,
		BytesUp:   1 << 40,
		BytesDown: 12345,
		Retries:   2,
		Reason:    "idle_timeout",
	})
	l.Access(&AccessEntry{Time: end, Client: netip.MustParseAddrPort("127.0.0.1:1"), Reason: "connect_timeout"})
	closeOK(t, l)

	w.mu.Lock()
	raw := bytes.Clone(w.buf.Bytes())
	w.mu.Unlock()
	if n := bytes.Count(raw, []byte("\n")); n != 2 {
		t.Fatalf("%d newlines for 2 entries: %q", n, raw)
	}
	lines := parseLines(t, raw)
	want := map[string]any{
		"ts":            "2026-11-23T12:00:00.123456789Z",
		"level":         "info",
		"logger":        "access",
		"msg":           "session",
		FieldListener:   "lst\"\n\x00\u2028</script>\ufffd", // invalid UTF-8 becomes U+FFFD
		FieldClient:     "127.0.0.1:40000",
		FieldUpstream:   "[::1]:8080",
		FieldLoop:       float64(7),
		FieldConnectMS:  1.5,
		FieldDurationMS: float64(2500),
		FieldBytesUp:    float64(1 << 40),
		FieldBytesDown:  float64(12345),
		FieldRetries:    float64(2),
		FieldReason:     "idle_timeout",
	}
	if fmt.Sprint(lines[0]) != fmt.Sprint(want) {
		t.Fatalf("access line\n got %v\nwant %v", lines[0], want)
	}
	if lines[1][FieldUpstream] != "" || lines[1][FieldReason] != "connect_timeout" || lines[1][FieldListener] != "" {
		t.Fatalf("never-connected line = %v", lines[1])
	}
}

// The console format: tab-separated time, level, logger, message, then the
// fields as JSON.
func ExampleLogger_Access() {
	lg, err := NewWithWriter(Config{Format: "console", Access: true}, zapcore.AddSync(os.Stdout))
	if err != nil {
		panic(err)
	}
	lg.Access(&AccessEntry{
		Time:      time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
		Listener:  "main",
		Client:    netip.MustParseAddrPort("127.0.0.1:40000"),
		Upstream:  netip.MustParseAddrPort("127.0.0.1:8080"),
		Loop:      1,
		Connect:   250 * time.Microsecond,
		Duration:  3 * time.Second,
		BytesUp:   512,
		BytesDown: 1 << 20,
		Reason:    "eof",
	})
	if err := lg.Close(context.Background()); err != nil {
		panic(err)
	}
	// Output:
	// 2026-11-23T12:00:00.000Z	INFO	access	session	{"listener": "main", "client": "127.0.0.1:40000", "upstream": "127.0.0.1:8080", "loop": 1, "connect_ms": 0.25, "duration_ms": 3000, "bytes_up": 512, "bytes_down": 1048576, "retries": 0, "reason": "eof"}
}

// Console format applies to zap lines and the drop report too.
func TestConsoleFormat(t *testing.T) {
	w := newTestWriter(true)
	l := startLogger(t, Config{Format: "console", RingSize: 2, Access: true}, w)
	l.Access(&AccessEntry{})
	waitEntered(t, w)
	l.Z().Warn("accept backoff", zap.Duration("delay", 5*time.Millisecond))
	l.Access(&AccessEntry{Reason: "eof"})
	l.Access(&AccessEntry{Reason: "dropped"})
	w.open()
	closeOK(t, l)
	w.mu.Lock()
	out := w.buf.String()
	w.mu.Unlock()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		"\tINFO\taccess\tsession\t{",
		"\tWARN\taccept backoff\t{\"delay\": \"5ms\"}",
		"\tINFO\taccess\tsession\t{",
		"\tWARN\tlogging\tdropped 1 log entries in the last ",
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, line := range lines {
		if !strings.Contains(line, want[i]) {
			t.Errorf("line %d = %q, want it to contain %q", i, line, want[i])
		}
	}
	if !strings.Contains(lines[2], `"reason": "eof"`) {
		t.Errorf("line 2 = %q, want reason eof", lines[2])
	}
}
