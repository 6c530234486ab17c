package proxyproto

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strconv"
)

// Version selects which header versions Parse accepts.
type Version uint8

const (
	V1  Version = 1
	V2  Version = 2
	Any         = V1 | V2
)

// Command is the v2 command; v1 headers are always Proxy.
type Command uint8

const (
	Local Command = 0 // health check from the proxy itself: use the real endpoints
	Proxy Command = 1 // relayed connection: Src/Dst describe the original one
)

// Family is the address family of the header (v1 TCP4/TCP6/UNKNOWN map to INET/INET6/Unspec).
type Family uint8

const (
	Unspec Family = 0
	INET   Family = 1
	INET6  Family = 2
	Unix   Family = 3
)

const (
	// MaxV1Len is the spec's worst case v1 line:
	// "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".
	MaxV1Len = 107
	// MaxV2Payload caps the v2 length field. The format allows 65535, but
	// the largest real headers are HAProxy's SSL TLVs with a client
	// certificate subject/CN (typically 1-2 KiB); 4 KiB covers those plus the
	// 216-byte AF_UNIX block and cloud TLVs (AWS VPC endpoint, GCP PSC),
	// while keeping the per-connection handshake buffer small. It is the
	// same bound as github.com/pires/go-proxyproto.
	MaxV2Payload = 4096
	v2HeadLen    = 16
	// MaxV2Len is the largest v2 header Parse accepts.
	MaxV2Len = v2HeadLen + MaxV2Payload
	// MaxLen is the buffer a caller accepting Any version needs.
	MaxLen = MaxV2Len

	lenINET  = 12
	lenINET6 = 36
	lenUnix  = 216
)

// TLV types from the spec (section 2.2).
const (
	TypeALPN      = 0x01
	TypeAuthority = 0x02
	TypeCRC32C    = 0x03
	TypeNoop      = 0x04
	TypeUniqueID  = 0x05
	TypeSSL       = 0x20
	TypeNetNS     = 0x30
)

var sigV2 = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

const sigV1 = "PROXY "

var (
	// ErrNeedMore means the bytes so far are a valid prefix of a header.
	ErrNeedMore = errors.New("proxyproto: need more bytes")
	// ErrNotProxy means the bytes do not start with the signature of an accepted version.
	ErrNotProxy = errors.New("proxyproto: no PROXY protocol header")
	// ErrV1TooLong means no CRLF within the first 107 bytes.
	ErrV1TooLong = errors.New("proxyproto: v1 header longer than 107 bytes")
	// ErrV1Syntax means a v1 line breaks the grammar (CRLF, spaces, protocol, field count).
	ErrV1Syntax = errors.New("proxyproto: v1 syntax error")
	// ErrV1Address means a v1 address is not valid for its protocol.
	ErrV1Address = errors.New("proxyproto: v1 invalid address")
	// ErrV1Port means a v1 port is not a decimal 0-65535 without leading zeros.
	ErrV1Port = errors.New("proxyproto: v1 invalid port")
	// ErrV2Version means the v2 version nibble is not 2.
	ErrV2Version = errors.New("proxyproto: v2 unsupported version")
	// ErrV2Command means the v2 command is neither LOCAL nor PROXY.
	ErrV2Command = errors.New("proxyproto: v2 unsupported command")
	// ErrV2Family means an unknown or unsupported family/transport byte.
	ErrV2Family = errors.New("proxyproto: v2 unsupported address family or transport")
	// ErrV2Length means the v2 length is shorter than the address block.
	ErrV2Length = errors.New("proxyproto: v2 length too short for address family")
	// ErrV2TooLong means the v2 length exceeds MaxV2Payload.
	ErrV2TooLong = errors.New("proxyproto: v2 header too long")
	// ErrV2TLV means the TLVs do not exactly fill the rest of the header.
	ErrV2TLV = errors.New("proxyproto: v2 malformed TLV")
	// ErrV2Checksum means a PP2_TYPE_CRC32C TLV does not match the header.
	ErrV2Checksum = errors.New("proxyproto: v2 CRC32c mismatch")
	// ErrTLVTooLarge means AppendV2 was given TLVs that do not fit in MaxV2Payload.
	ErrTLVTooLarge = errors.New("proxyproto: TLVs too large")
)

// Header is a parsed PROXY header.
type Header struct {
	Version Version
	Command Command
	Family  Family
	// Src and Dst are the original connection's endpoints. They are valid
	// only for Command Proxy with Family INET or INET6 (not for LOCAL, v1
	// UNKNOWN or AF_UNIX); otherwise the caller
	// uses the socket's real addresses. IPv4-mapped IPv6 addresses are kept
	// as sent (a TCP6 line may carry them); unmap before policy checks.
	Src, Dst netip.AddrPort
	// TLVs is the raw v2 TLV block (validated: it tiles exactly). It aliases
	// the buffer given to Parse.
	TLVs []byte
}

// HasAddrs reports whether Src and Dst carry the original endpoints.
func (h Header) HasAddrs() bool { return h.Src.IsValid() && h.Dst.IsValid() }

// Clone returns h with TLVs copied out of the parse buffer.
func (h Header) Clone() Header {
	if h.TLVs != nil {
		h.TLVs = append([]byte(nil), h.TLVs...)
	}
	return h
}

// TLV returns the value of the first TLV of type typ.
func (h Header) TLV(typ byte) ([]byte, bool) {
	for t := h.TLVs; len(t) >= 3; {
		l := int(binary.BigEndian.Uint16(t[1:3]))
		if 3+l > len(t) {
			return nil, false
		}
		if t[0] == typ {
			return t[3 : 3+l], true
		}
		t = t[3+l:]
	}
	return nil, false
}

// Parse parses a PROXY header of an accepted version at the start of b. It
// returns the header and its length n, ErrNeedMore, or an error.
func Parse(b []byte, accept Version) (Header, int, error) {
	if len(b) == 0 {
		return Header{}, 0, ErrNeedMore
	}
	switch {
	case accept&V2 != 0 && b[0] == sigV2[0]:
		return parseV2(b)
	case accept&V1 != 0 && b[0] == sigV1[0]:
		return parseV1(b)
	}
	return Header{}, 0, ErrNotProxy
}

func parseV1(b []byte) (Header, int, error) {
	n := min(len(b), len(sigV1))
	if string(b[:n]) != sigV1[:n] {
		return Header{}, 0, ErrNotProxy
	}
	lim := min(len(b), MaxV1Len)
	end := -1
	for i, c := range b[:lim] {
		if c == '\n' {
			end = i
			break
		}
	}
	if end < 0 {
		if len(b) >= MaxV1Len {
			return Header{}, 0, ErrV1TooLong
		}
		// A CR anywhere but last can never become CRLF: fail now rather than at the timeout.
		for i, c := range b[:lim] {
			if c == '\r' && i != lim-1 {
				return Header{}, 0, ErrV1Syntax
			}
		}
		return Header{}, 0, ErrNeedMore
	}
	if end < len(sigV1) || b[end-1] != '\r' {
		return Header{}, 0, ErrV1Syntax
	}
	line := b[len(sigV1) : end-1]
	if indexByte(line, '\r') >= 0 {
		return Header{}, 0, ErrV1Syntax // the line holds no CR or LF but its terminator
	}
	h := Header{Version: V1, Command: Proxy}
	total := end + 1
	switch {
	case hasPrefix(line, "UNKNOWN"):
		// The spec: the receiver must ignore anything before the CRLF.
		if len(line) > 7 && line[7] != ' ' {
			return Header{}, 0, ErrV1Syntax
		}
		return h, total, nil
	case hasPrefix(line, "TCP4 "):
		h.Family = INET
	case hasPrefix(line, "TCP6 "):
		h.Family = INET6
	default:
		return Header{}, 0, ErrV1Syntax
	}
	var f [4][]byte
	rest := line[5:]
	for i := range f {
		sp := indexByte(rest, ' ')
		if i == 3 {
			if sp >= 0 {
				return Header{}, 0, ErrV1Syntax
			}
			sp = len(rest)
		} else if sp < 0 {
			return Header{}, 0, ErrV1Syntax
		}
		if sp == 0 {
			return Header{}, 0, ErrV1Syntax // empty field: double space or trailing space
		}
		f[i] = rest[:sp]
		if i < 3 {
			rest = rest[sp+1:]
		}
	}
	var src, dst netip.Addr
	var ok bool
	if h.Family == INET {
		src, ok = parseIPv4(f[0])
		if ok {
			dst, ok = parseIPv4(f[1])
		}
	} else {
		src, ok = parseIPv6(f[0])
		if ok {
			dst, ok = parseIPv6(f[1])
		}
	}
	if !ok {
		return Header{}, 0, ErrV1Address
	}
	sp, ok1 := parsePort(f[2])
	dp, ok2 := parsePort(f[3])
	if !ok1 || !ok2 {
		return Header{}, 0, ErrV1Port
	}
	h.Src = netip.AddrPortFrom(src, sp)
	h.Dst = netip.AddrPortFrom(dst, dp)
	return h, total, nil
}

func parseV2(b []byte) (Header, int, error) {
	n := min(len(b), len(sigV2))
	if string(b[:n]) != string(sigV2[:n]) {
		return Header{}, 0, ErrNotProxy
	}
	// Check each fixed byte as soon as it arrives so garbage fails fast.
	if len(b) > 12 {
		if b[12]>>4 != 2 {
			return Header{}, 0, ErrV2Version
		}
		if b[12]&0x0F > 1 {
			return Header{}, 0, ErrV2Command
		}
	}
	if len(b) < v2HeadLen {
		if len(b) > 13 && Command(b[12]&0x0F) == Proxy {
			if _, err := addrLen(b[13]); err != nil {
				return Header{}, 0, err
			}
		}
		return Header{}, 0, ErrNeedMore
	}
	cmd := Command(b[12] & 0x0F)
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length > MaxV2Payload {
		return Header{}, 0, ErrV2TooLong
	}
	h := Header{Version: V2, Command: cmd}
	var al int
	if cmd == Proxy {
		var err error
		if al, err = addrLen(b[13]); err != nil {
			return Header{}, 0, err
		}
		if length < al {
			return Header{}, 0, ErrV2Length
		}
	}
	total := v2HeadLen + length
	if len(b) < total {
		return Header{}, 0, ErrNeedMore
	}
	if cmd == Local {
		// The spec: the receiver must discard the protocol block, family included.
		return h, total, nil
	}
	h.Family = Family(b[13] >> 4)
	p := b[v2HeadLen:total]
	switch h.Family {
	case INET:
		src := netip.AddrFrom4([4]byte(p[0:4]))
		dst := netip.AddrFrom4([4]byte(p[4:8]))
		h.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(p[8:10]))
		h.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(p[10:12]))
	case INET6:
		src := netip.AddrFrom16([16]byte(p[0:16]))
		dst := netip.AddrFrom16([16]byte(p[16:32]))
		h.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(p[32:34]))
		h.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(p[34:36]))
	}
	tlvs := p[al:]
	crcAt := -1
	for t, off := tlvs, v2HeadLen+al; len(t) > 0; {
		if len(t) < 3 {
			return Header{}, 0, ErrV2TLV
		}
		l := int(binary.BigEndian.Uint16(t[1:3]))
		if 3+l > len(t) {
			return Header{}, 0, ErrV2TLV
		}
		if t[0] == TypeCRC32C {
			if l != 4 || crcAt >= 0 {
				return Header{}, 0, ErrV2TLV
			}
			crcAt = off + 3
		}
		t, off = t[3+l:], off+3+l
	}
	if crcAt >= 0 && !checksumOK(b[:total], crcAt) {
		return Header{}, 0, ErrV2Checksum
	}
	if len(tlvs) > 0 {
		h.TLVs = tlvs
	}
	return h, total, nil
}

// addrLen validates a PROXY command's family/transport byte and returns the
// address block length.
func addrLen(fam byte) (int, error) {
	// PROXY with AF_UNSPEC is refused: the spec lets a receiver refuse it,
	// and HAProxy (the reference implementation) does.
	switch fam {
	case 0x11: // TCP over IPv4
		return lenINET, nil
	case 0x21: // TCP over IPv6
		return lenINET6, nil
	case 0x31: // UNIX stream
		return lenUnix, nil
	}
	return 0, ErrV2Family
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksumOK verifies the CRC32c of hdr computed with the 4 value bytes at
// at set to zero, as the spec defines it.
func checksumOK(hdr []byte, at int) bool {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, hdr[:at])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, hdr[at+4:])
	return c == binary.BigEndian.Uint32(hdr[at:at+4])
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// parseIPv4 parses a strict dotted quad (no leading zeros, no other forms).
func parseIPv4(s []byte) (netip.Addr, bool) {
	var a [4]byte
	i := 0
	for k := range 4 {
		if k > 0 {
			if i >= len(s) || s[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start, v := i, 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' && i-start < 3 {
			v = v*10 + int(s[i]-'0')
			i++
		}
		if i == start || v > 255 || (i-start > 1 && s[start] == '0') {
			return netip.Addr{}, false
		}
		a[k] = byte(v)
	}
	if i != len(s) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

func parseIPv6(s []byte) (netip.Addr, bool) {
	if len(s) < 2 || len(s) > 45 || indexByte(s, ':') < 0 || indexByte(s, '%') >= 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(s))
	if err != nil || !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

func parsePort(s []byte) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

// AppendV1 appends a v1 header for a TCP connection from src to dst. Both
// IPv4 (or IPv4-mapped) → TCP4; otherwise TCP6 with IPv4 addresses written
// as ::ffff:a.b.c.d; an invalid address → "PROXY UNKNOWN\r\n". Zones are dropped.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	if !src.IsValid() || !dst.IsValid() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	s, d := src.Addr().Unmap().WithZone(""), dst.Addr().Unmap().WithZone("")
	if s.Is4() && d.Is4() {
		b = append(b, "PROXY TCP4 "...)
	} else {
		b = append(b, "PROXY TCP6 "...)
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	b = s.AppendTo(b)
	b = append(b, ' ')
	b = d.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, '\r', '\n')
}

// TLV is one type-length-value entry for AppendV2.
type TLV struct {
	Type  byte
	Value []byte
}

// AppendV2 appends a v2 PROXY-command header for a TCP connection from src
// to dst, with tlvs. Both IPv4 (or IPv4-mapped) → TCP over IPv4; otherwise
// TCP over IPv6 (IPv4 as ::ffff:a.b.c.d); an invalid address → a LOCAL
// header, which every receiver must accept and answer by using the real
// endpoints (PROXY with AF_UNSPEC would be the literal spelling, but HAProxy
// rejects it). It fails only if the TLVs would push the length past
// MaxV2Payload.
func AppendV2(b []byte, src, dst netip.AddrPort, tlvs ...TLV) ([]byte, error) {
	cmd, fam, al := byte(0x20), byte(0x00), 0 // version 2, LOCAL, UNSPEC
	var s, d netip.Addr
	if src.IsValid() && dst.IsValid() {
		s, d = src.Addr().Unmap(), dst.Addr().Unmap()
		cmd = 0x21 // version 2, PROXY
		if s.Is4() && d.Is4() {
			fam, al = 0x11, lenINET
		} else {
			fam, al = 0x21, lenINET6
		}
	}
	length := al
	for _, t := range tlvs {
		length += 3 + len(t.Value)
		if len(t.Value) > MaxV2Payload || length > MaxV2Payload {
			return b, ErrTLVTooLarge
		}
	}
	b = append(b, sigV2[:]...)
	b = append(b, cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	switch fam {
	case 0x11:
		s4, d4 := s.As4(), d.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	case 0x21:
		s16, d16 := s.As16(), d.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	if al > 0 {
		b = binary.BigEndian.AppendUint16(b, src.Port())
		b = binary.BigEndian.AppendUint16(b, dst.Port())
	}
	for _, t := range tlvs {
		b = append(b, t.Type)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
		b = append(b, t.Value...)
	}
	return b, nil
}

// AppendV2Local appends a v2 LOCAL header (no addresses): what a proxy sends
// on its own health-check connections.
func AppendV2Local(b []byte) []byte {
	b = append(b, sigV2[:]...)
	return append(b, 0x20, 0x00, 0x00, 0x00)
}
