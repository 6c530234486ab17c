package tlshello

import (
	"errors"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// Errors. ErrNeedMore is not a failure: the bytes so far are a valid prefix.
var (
	ErrNeedMore  = errors.New("tlshello: need more bytes")
	ErrNotTLS    = errors.New("tlshello: not a TLS handshake record")
	ErrSSLv2     = errors.New("tlshello: SSLv2-compatible ClientHello refused")
	ErrMalformed = errors.New("tlshello: malformed ClientHello")
)

// Record layer and message constants (RFC 8446).
const (
	recordHeaderLen  = 5
	maxRecordPayload = 1 << 14 // TLSPlaintext.length
	typeHandshake    = 22
	typeClientHello  = 1

	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
)

// Hello is what a router reads of a ClientHello.
type Hello struct {
	// ServerName is the SNI host_name, lower-cased; "" when none was sent.
	ServerName string
	// ALPN lists the offered application protocols in the client's order,
	// GREASE removed; nil when the extension is absent.
	ALPN []string
	// Version is the highest version offered: from supported_versions if
	// present (0x0304 for TLS 1.3), else the legacy_version field.
	Version uint16
	// Len is the number of bytes of the records that carried the hello
	// (the caller forwards them with everything else; nothing is consumed).
	Len int
}

// IsStart reports whether b, at least one byte, can begin a TLS handshake
// record: what a classifier asks before calling Parse.
func IsStart(b []byte) bool { return len(b) > 0 && b[0] == typeHandshake }

// Parse reads the ClientHello at the start of b. It returns ErrNeedMore
// while b is a valid prefix of one; the caller bounds how long that may
// go on (its buffer, its handshake timeout).
func Parse(b []byte) (Hello, error) {
	if len(b) == 0 {
		return Hello{}, ErrNeedMore
	}
	if b[0]&0x80 != 0 { // SSLv2 record header: 2-byte length, then msg_type 1
		if len(b) < 3 {
			return Hello{}, ErrNeedMore
		}
		if b[2] == 1 {
			return Hello{}, ErrSSLv2
		}
		return Hello{}, ErrNotTLS
	}
	if b[0] != typeHandshake {
		return Hello{}, ErrNotTLS
	}
	msg, n, err := reassemble(b)
	if err != nil {
		return Hello{}, err
	}
	h, err := parseClientHello(msg)
	h.Len = n
	return h, err
}

// reassemble walks the handshake records at the start of b until they hold
// the whole first handshake message, and returns that message (type,
// length and body) and the bytes of records it took. With one record (the
// usual case) msg aliases b; with more it is a copy.
func reassemble(b []byte) (msg []byte, n int, err error) {
	var (
		off, total int // position in b; bytes of handshake payload seen
		want       = -1
		first      []byte // the first record's payload
		joined     []byte // the payloads, once there is more than one
		records    int
	)
	for {
		if len(b)-off < recordHeaderLen {
			if off+1 <= len(b) && b[off] != typeHandshake {
				return nil, 0, ErrMalformed
			}
			if len(b)-off >= 3 && b[off+1] != 3 {
				return nil, 0, ErrMalformed
			}
			return nil, 0, ErrNeedMore
		}
		h := b[off : off+recordHeaderLen]
		if h[0] != typeHandshake || h[1] != 3 {
			return nil, 0, ErrMalformed
		}
		l := int(h[3])<<8 | int(h[4])
		if l == 0 || l > maxRecordPayload {
			return nil, 0, ErrMalformed // zero-length handshake fragments are forbidden
		}
		if len(b)-off-recordHeaderLen < l {
			if want < 0 && records == 0 && len(b)-off-recordHeaderLen >= 4 {
				if err := checkHeader(b[off+recordHeaderLen:]); err != nil {
					return nil, 0, err
				}
			}
			return nil, 0, ErrNeedMore
		}
		p := b[off+recordHeaderLen : off+recordHeaderLen+l]
		off += recordHeaderLen + l
		records++
		switch records {
		case 1:
			first = p
		case 2:
			joined = append(append(make([]byte, 0, len(first)+len(p)), first...), p...)
		default:
			joined = append(joined, p...)
		}
		total += l
		buf := first
		if joined != nil {
			buf = joined
		}
		if want < 0 && len(buf) >= 4 {
			if err := checkHeader(buf); err != nil {
				return nil, 0, err
			}
			want = 4 + (int(buf[1])<<16 | int(buf[2])<<8 | int(buf[3]))
		}
		if want >= 0 && total >= want {
			return buf[:want], off, nil
		}
	}
}

// checkHeader refuses a first handshake message that is not a ClientHello.
func checkHeader(m []byte) error {
	if m[0] != typeClientHello {
		return ErrMalformed
	}
	if l := int(m[1])<<16 | int(m[2])<<8 | int(m[3]); l < 2+32+1+2+1 { // the smallest body
		return ErrMalformed
	}
	return nil
}

// isGREASE reports a GREASE value of RFC 8701: 0x?A?A with equal bytes.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// parseClientHello reads a complete ClientHello message (with its 4-byte
// handshake header).
func parseClientHello(m []byte) (Hello, error) {
	var h Hello
	s := cryptobyte.String(m[4:])
	var (
		legacy             uint16
		sid, suites, comps cryptobyte.String
	)
	if !s.ReadUint16(&legacy) || !s.Skip(32) ||
		!s.ReadUint8LengthPrefixed(&sid) || len(sid) > 32 ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites) < 2 || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&comps) || len(comps) < 1 {
		return h, ErrMalformed
	}
	h.Version = legacy
	if s.Empty() {
		return h, nil // no extensions (TLS 1.2 and older may omit them)
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return h, ErrMalformed
	}
	var seenArr [32]uint16
	seen := seenArr[:0]
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return h, ErrMalformed
		}
		for _, t := range seen {
			if t == typ {
				return h, ErrMalformed // "MUST NOT be more than one extension of the same type"
			}
		}
		seen = append(seen, typ)
		var err error
		switch typ {
		case extServerName:
			h.ServerName, err = parseSNI(data)
		case extALPN:
			h.ALPN, err = parseALPN(data)
		case extSupportedVersions:
			h.Version, err = parseVersions(data, h.Version)
		}
		if err != nil {
			return h, err
		}
	}
	return h, nil
}

func parseSNI(d cryptobyte.String) (string, error) {
	var list cryptobyte.String
	if !d.ReadUint16LengthPrefixed(&list) || !d.Empty() || list.Empty() {
		return "", ErrMalformed
	}
	name := ""
	for !list.Empty() {
		var typ uint8
		var n cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&n) {
			return "", ErrMalformed
		}
		if typ != 0 { // not host_name: ignored, as servers do
			continue
		}
		if name != "" || len(n) == 0 || n[len(n)-1] == '.' {
			return "", ErrMalformed
		}
		for _, c := range n {
			if c <= ' ' || c >= 0x7f {
				return "", ErrMalformed
			}
		}
		name = strings.ToLower(string(n))
	}
	return name, nil
}

func parseALPN(d cryptobyte.String) ([]string, error) {
	var list cryptobyte.String
	if !d.ReadUint16LengthPrefixed(&list) || !d.Empty() || list.Empty() {
		return nil, ErrMalformed
	}
	out := []string{}
	for !list.Empty() {
		var p cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&p) || len(p) == 0 {
			return nil, ErrMalformed
		}
		if len(p) == 2 && isGREASE(uint16(p[0])<<8|uint16(p[1])) {
			continue
		}
		out = append(out, string(p))
	}
	return out, nil
}

func parseVersions(d cryptobyte.String, legacy uint16) (uint16, error) {
	var list cryptobyte.String
	if !d.ReadUint8LengthPrefixed(&list) || !d.Empty() || len(list) < 2 || len(list)%2 != 0 {
		return 0, ErrMalformed
	}
	best := uint16(0)
	for !list.Empty() {
		var v uint16
		list.ReadUint16(&v)
		if !isGREASE(v) && v > best {
			best = v
		}
	}
	if best == 0 {
		return legacy, nil
	}
	return best, nil
}
