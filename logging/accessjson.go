package logging

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendAccessJSON appends e as one JSON line, byte for byte what zap's JSON
// encoder (with this package's encoder config) produces for the same entry
// through accessMarshaler; a fuzz test holds the two equal. It exists
// because the writer goroutine shares the machine's cores with the relay
// loops: it is about three times cheaper than going through zap's generic
// encoder (which escapes every key and clones an encoder per line).
func appendAccessJSON(b []byte, e *AccessEntry) []byte {
	b = append(b, `{"level":"info"`...)
	if !e.Time.IsZero() {
		b = append(b, `,"ts":"`...)
		b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"logger":"`+AccessLoggerName+`","msg":"`...)
	b = append(b, e.Event.Message()...)
	b = append(b, `","`+FieldListener+`":"`...)
	b = appendJSONString(b, e.Listener)
	b = append(b, `","`+FieldClient+`":"`...)
	b = appendAddrPort(b, e.Client)
	b = append(b, `","`+FieldUpstream+`":"`...)
	b = appendAddrPort(b, e.Upstream)
	b = append(b, `","`+FieldLoop+`":`...)
	b = strconv.AppendInt(b, int64(e.Loop), 10)
	b = append(b, `,"`+FieldConnectMS+`":`...)
	b = strconv.AppendFloat(b, ms(e.Connect), 'f', -1, 64)
	b = append(b, `,"`+FieldDurationMS+`":`...)
	b = strconv.AppendFloat(b, ms(e.Duration), 'f', -1, 64)
	b = append(b, `,"`+FieldBytesUp+`":`...)
	b = strconv.AppendUint(b, e.BytesUp, 10)
	b = append(b, `,"`+FieldBytesDown+`":`...)
	b = strconv.AppendUint(b, e.BytesDown, 10)
	b = append(b, `,"`+FieldRetries+`":`...)
	b = strconv.AppendInt(b, int64(e.Retries), 10)
	if e.Event == AccessEnd {
		b = appendStringField(b, `,"`+FieldReason+`":"`, e.Reason)
	}
	for _, f := range [...]struct{ key, v string }{
		{`,"` + FieldTarget + `":"`, e.Target}, {`,"` + FieldUser + `":"`, e.User},
		{`,"` + FieldRoute + `":"`, e.Route}, {`,"` + FieldSNI + `":"`, e.SNI},
	} {
		if f.v != "" { // the optional fields: left out when empty
			b = appendStringField(b, f.key, f.v)
		}
	}
	return append(b, "}\n"...)
}

// appendStringField appends key (`,"name":"`), v escaped and the closing
// quote.
func appendStringField(b []byte, key, v string) []byte {
	return append(appendJSONString(append(b, key...), v), '"')
}

// appendAddrPort appends ip:port (nothing for the zero value); the output
// has only digits, hex, dots, colons, brackets and, for a zone, the zone
// name, which netip only accepts from the OS or a parsed string, so it is
// escaped like any other string.
func appendAddrPort(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return b
	}
	if a.Addr().Zone() == "" {
		return a.AppendTo(b)
	}
	return appendJSONString(b, a.String())
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s escaped the way zap's JSON encoder escapes
// strings: \\ \" \n \r \t, other bytes below 0x20 as \u00XX, invalid UTF-8
// as \ufffd, everything else as is.
func appendJSONString(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[last:i]...)
			b = append(b, `\ufffd`...)
			i++
			last = i
			continue
		}
		if c >= 0x20 && c != '\\' && c != '"' {
			i++
			continue
		}
		b = append(b, s[last:i]...)
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		last = i
	}
	return append(b, s[last:]...)
}
