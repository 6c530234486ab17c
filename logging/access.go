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
	Event     AccessEvent    // end (the default), start or interim
	Time      time.Time      // session end (or the start or interim record's moment); zero means "now" at Access time
	Listener  string         // listener name or address
	Client    netip.AddrPort // client address
	Upstream  netip.AddrPort // zero if never connected
	Loop      int            // relay loop id
	Connect   time.Duration  // time to connect upstream
	Duration  time.Duration  // session lifetime (so far, for start and interim records)
	BytesUp   uint64         // client -> upstream (so far)
	BytesDown uint64         // upstream -> client (so far)
	Retries   int            // failed upstream connect attempts before success or give-up
	Reason    string         // close reason: eof, idle_timeout, fin_timeout, connect_timeout, refused, reset, shutdown, rejected_queue_full, rejected_limit, ...; only on an end record
	// Target and User: what a SOCKS5 or HTTP CONNECT client asked for
	// ("host:port" or "ip:port") and the user it gave, on the line of a
	// session that ended before it was relayed (refused, denied, failed
	// login). Empty, and left out of the line, otherwise.
	Target string
	User   string
	// Route and SNI: on a listener with routes, the route the session
	// took ("default" when none matched) and the TLS server name it sent.
	// Empty, and left out of the line, otherwise.
	Route string
	SNI   string
}

// AccessEvent says which record of a session an access line is. The end
// record is the one every session gets (msg "session", with the reason);
// the others are written only when configured (log.access_on_connect,
// log.access_interval) and carry no reason, as Envoy's TCP proxy writes
// upstream-connected and periodic records before the final one.
type AccessEvent uint8

const (
	AccessEnd     AccessEvent = iota // the session ended (msg AccessMessage)
	AccessStart                      // the upstream connected: relaying begins (msg AccessStartMessage)
	AccessInterim                    // a long session, every log.access_interval (msg AccessInterimMessage)
)

// Message is the msg of an access line of this event.
func (e AccessEvent) Message() string {
	switch e {
	case AccessStart:
		return AccessStartMessage
	case AccessInterim:
		return AccessInterimMessage
	}
	return AccessMessage
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
	FieldRoute      = "route"  // only when set: the route of a routed session
	FieldSNI        = "sni"    // only when set: the TLS server name of a routed session

	AccessLoggerName     = "access"
	AccessMessage        = "session"         // the end record
	AccessStartMessage   = "session_start"   // the start record: the upstream connected
	AccessInterimMessage = "session_interim" // an interim record: bytes so far
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
	if e.Event == AccessEnd {
		enc.AddString(FieldReason, e.Reason)
	}
	if e.Target != "" {
		enc.AddString(FieldTarget, e.Target)
	}
	if e.User != "" {
		enc.AddString(FieldUser, e.User)
	}
	if e.Route != "" {
		enc.AddString(FieldRoute, e.Route)
	}
	if e.SNI != "" {
		enc.AddString(FieldSNI, e.SNI)
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
