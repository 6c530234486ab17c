package logging

import (
	"net/netip"
	"time"

	"go.uber.org/zap/zapcore"
)

// AccessEntry is one session's access-log record, filled by the relay loop
// when the session ends and passed to Logger.Access. Access copies it, so
// the caller may reuse the struct immediately.
type AccessEntry struct {
	Time      time.Time      // session end; zero means "now" at Access time
	Listener  string         // listener name or address
	Client    netip.AddrPort // client address
	Upstream  netip.AddrPort // zero if never connected
	Loop      int            // relay loop id
	Connect   time.Duration  // time to connect upstream
	Duration  time.Duration  // session lifetime
	BytesUp   uint64         // client -> upstream
	BytesDown uint64         // upstream -> client
	Retries   int            // failed upstream connect attempts before success or give-up
	Reason    string         // close reason: eof, idle_timeout, fin_timeout, connect_timeout, refused, reset, shutdown, rejected_queue_full, rejected_limit, ...
	// Target and User: what a SOCKS5 or HTTP CONNECT client asked for
	// ("host:port" or "ip:port") and the user it gave, on the line of a
	// session that ended before it was relayed (refused, denied, failed
	// login). Empty, and left out of the line, otherwise.
	Target string
	User   string
}

// Field names of an access line. JSON lines also carry "ts", "level"
// ("info"), "logger" ("access") and "msg" ("session") from the encoder.
const (
	FieldListener   = "listener"
	FieldClient     = "client"      // "ip:port", "[ipv6]:port"
	FieldUpstream   = "upstream"    // "" if never connected
	FieldLoop       = "loop"        // integer
	FieldConnectMS  = "connect_ms"  // float milliseconds
	FieldDurationMS = "duration_ms" // float milliseconds
	FieldBytesUp    = "bytes_up"    // integer, client -> upstream
	FieldBytesDown  = "bytes_down"  // integer, upstream -> client
	FieldRetries    = "retries"     // integer
	FieldReason     = "reason"
	FieldTarget     = "target" // only when set: a refused edge session's requested destination
	FieldUser       = "user"   // only when set: the user an edge session gave

	AccessLoggerName = "access"
	AccessMessage    = "session"
)

// accessMarshaler encodes one AccessEntry through a zap ObjectEncoder, so
// the configured encoder (JSON or console) escapes every string. It lives
// on the writer goroutine and reuses its scratch buffer.
type accessMarshaler struct {
	e       *AccessEntry
	scratch []byte
}

func (m *accessMarshaler) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	e := m.e
	enc.AddString(FieldListener, e.Listener)
	m.addAddr(enc, FieldClient, e.Client)
	m.addAddr(enc, FieldUpstream, e.Upstream)
	enc.AddInt(FieldLoop, e.Loop)
	enc.AddFloat64(FieldConnectMS, ms(e.Connect))
	enc.AddFloat64(FieldDurationMS, ms(e.Duration))
	enc.AddUint64(FieldBytesUp, e.BytesUp)
	enc.AddUint64(FieldBytesDown, e.BytesDown)
	enc.AddInt(FieldRetries, e.Retries)
	enc.AddString(FieldReason, e.Reason)
	if e.Target != "" {
		enc.AddString(FieldTarget, e.Target)
	}
	if e.User != "" {
		enc.AddString(FieldUser, e.User)
	}
	return nil
}

// addAddr appends the address without allocating a string; a zero
// AddrPort becomes "".
func (m *accessMarshaler) addAddr(enc zapcore.ObjectEncoder, key string, a netip.AddrPort) {
	m.scratch = m.scratch[:0]
	if a.IsValid() {
		m.scratch = a.AppendTo(m.scratch)
	}
	enc.AddByteString(key, m.scratch)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
