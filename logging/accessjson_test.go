package logging

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapAccessLine encodes e through zap's JSON encoder: the reference the
// hand-written appendAccessJSON must match byte for byte.
func zapAccessLine(t testing.TB, e *AccessEntry) string {
	t.Helper()
	buf, err := newEncoder("json").EncodeEntry(zapcore.Entry{
		Level: zapcore.InfoLevel, Time: e.Time, LoggerName: AccessLoggerName, Message: e.Event.Message(),
	}, []zapcore.Field{zap.Inline(&accessMarshaler{e: e})})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	return buf.String()
}

func checkSameAsZap(t testing.TB, e *AccessEntry) {
	t.Helper()
	want := zapAccessLine(t, e)
	if got := string(appendAccessJSON(nil, e)); got != want {
		t.Fatalf("appendAccessJSON differs from zap\n got %q\nwant %q", got, want)
	}
}

func TestAccessJSONMatchesZap(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	for _, e := range []AccessEntry{
		{},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, loc), Reason: "eof"},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), Listener: "a\"b\\c\nd\re\tf\x01\x1f\x7f",
			Client: netip.MustParseAddrPort("127.0.0.1:1"), Upstream: netip.MustParseAddrPort("[::1]:65535"),
			Loop: -3, Connect: 1, Duration: math.MaxInt64, BytesUp: math.MaxUint64, Retries: 9, Reason: "\xff\xfe ok é \u2028"},
		{Event: AccessStart, Time: time.Unix(0, 2), Listener: "s", Reason: "ignored", Target: "example.com:443"},
		{Event: AccessInterim, Time: time.Unix(0, 3), BytesUp: 7, User: "u"},
		{Time: time.Unix(0, 1), Client: netip.MustParseAddrPort("[fe80::1%eth\"0]:80"),
			Upstream: netip.MustParseAddrPort("[::ffff:127.0.0.1]:80"), Connect: 123456789 * time.Nanosecond},
	} {
		checkSameAsZap(t, &e)
	}
}

func FuzzAccessJSONMatchesZap(f *testing.F) {
	f.Add("main", "eof", "127.0.0.1:40000", int64(1500000), int64(7), uint64(1)<<40, 3, "", "")
	f.Add("l\"\n\x00\xff", "idle_timeout\u2028", "[::1%lo]:1", int64(-1), int64(0), uint64(0), -1, "", "")
	f.Add("socks", "policy_denied", "127.0.0.1:1", int64(0), int64(9), uint64(0), 0, "example.com:443", "alice\"\x01")
	f.Fuzz(func(t *testing.T, listener, reason, addr string, connect, unixNano int64, bytes uint64, loop int, target, user string) {
		client, _ := netip.ParseAddrPort(addr) // invalid input → zero value, also a case
		e := AccessEntry{
			Time: time.Unix(0, unixNano), Listener: listener, Reason: reason, Client: client, Upstream: client,
			Loop: loop, Connect: time.Duration(connect), Duration: time.Duration(unixNano),
			BytesUp: bytes, BytesDown: bytes / 3, Retries: loop / 2, Target: target, User: user,
			Event: AccessEvent(bytes % 3), Route: user, SNI: target,
		}
		checkSameAsZap(t, &e)
	})
}

func BenchmarkAccessEncode(b *testing.B) {
	e := benchEntry()
	b.Run("appendAccessJSON", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = appendAccessJSON(buf[:0], &e)
		}
	})
	b.Run("zap-json", func(b *testing.B) {
		enc := newEncoder("json")
		am := accessMarshaler{e: &e}
		fields := []zapcore.Field{zap.Inline(&am)}
		b.ReportAllocs()
		for b.Loop() {
			buf, _ := enc.EncodeEntry(zapcore.Entry{Level: zapcore.InfoLevel, Time: e.Time,
				LoggerName: AccessLoggerName, Message: AccessMessage}, fields)
			buf.Free()
		}
	})
}
