package httpconnect

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/relayd/relayd/edge/auth"
	"github.com/relayd/relayd/edge/policy"
)

// DefaultMaxHead is the default bound on the request head (request line and
// headers up to and including the blank line).
const DefaultMaxHead = 8 << 10

// Realm is the Basic auth realm sent with 407.
const Realm = "relayd"

var (
	ErrNeedMore = errors.New("httpconnect: need more bytes")
	// ErrHeadTooLarge: no complete head within MaxHead bytes (431).
	ErrHeadTooLarge = errors.New("httpconnect: request head too large")
	// ErrMethodNotAllowed: a method other than CONNECT (405).
	ErrMethodNotAllowed = errors.New("httpconnect: method not allowed")
	// ErrBadRequest: malformed request line or line endings (400).
	ErrBadRequest = errors.New("httpconnect: malformed request")
	// ErrBadVersion: HTTP/x.y other than 1.0 and 1.1 (505).
	ErrBadVersion = errors.New("httpconnect: unsupported HTTP version")
	// ErrBadTarget: the target is not host:port with a valid host (400).
	ErrBadTarget = errors.New("httpconnect: invalid target host")
	// ErrBadPort: the target port is missing, 0, or not plain decimal ≤ 65535 (400).
	ErrBadPort = errors.New("httpconnect: invalid target port")
	// ErrBadHeader: a malformed header line, duplicate Proxy-Authorization, or a body (400).
	ErrBadHeader = errors.New("httpconnect: invalid header")
	// ErrAuthRequired: no Proxy-Authorization while credentials are configured (407).
	ErrAuthRequired = errors.New("httpconnect: proxy authentication required")
	// ErrAuthFailed: Proxy-Authorization present but not valid Basic credentials (407).
	ErrAuthFailed = errors.New("httpconnect: proxy authentication failed")
)

// Config configures Parse. The zero value is: no authentication, 8 KiB heads.
type Config struct {
	Verify  auth.Verifier // nil: no authentication
	MaxHead int           // 0 means DefaultMaxHead
}

// Request is the CONNECT target: exactly one of Host and Addr is set.
type Request struct {
	Host string         // validated host name, to be resolved off the loop
	Addr netip.AddrPort // IP-literal target
	Port uint16
	// User is the user name of a Proxy-Authorization header, accepted or
	// not ("" without one), for the log.
	User string
}

// Parse parses a CONNECT request head at the start of b. On success n is the
// head's length and b[n:] is tunnel payload. A head refused for its
// credentials (ErrAuthRequired, ErrAuthFailed) still returns its Request:
// the target asked for and the user tried, for the log.
func Parse(b []byte, cfg Config) (Request, int, error) {
	max := cfg.MaxHead
	if max <= 0 {
		max = DefaultMaxHead
	}
	lim := b[:min(len(b), max)]
	lineEnd := bytes.Index(lim, crlf)
	if lineEnd < 0 {
		if err := checkPartialLine(lim); err != nil {
			return Request{}, 0, err
		}
		if len(b) >= max {
			return Request{}, 0, ErrHeadTooLarge
		}
		return Request{}, 0, ErrNeedMore
	}
	req, err := parseRequestLine(lim[:lineEnd])
	if err != nil {
		return Request{}, 0, err
	}
	// The head ends at the first empty line: either right after the request
	// line or at the first CRLFCRLF.
	var headEnd int
	if bytes.HasPrefix(lim[lineEnd:], crlfcrlf) {
		headEnd = lineEnd + 4
	} else if i := bytes.Index(lim[lineEnd:], crlfcrlf); i >= 0 {
		headEnd = lineEnd + i + 4
	} else {
		if err := checkLineEndings(lim[lineEnd:]); err != nil {
			return Request{}, 0, err
		}
		if len(b) >= max {
			return Request{}, 0, ErrHeadTooLarge
		}
		return Request{}, 0, ErrNeedMore
	}
	user, err := parseHeaders(lim[lineEnd+2:headEnd-2], cfg.Verify)
	req.User = user
	if errors.Is(err, ErrAuthRequired) || errors.Is(err, ErrAuthFailed) {
		return req, 0, err
	}
	if err != nil {
		return Request{}, 0, err
	}
	return req, headEnd, nil
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// checkPartialLine fails early on bytes that can never start a CONNECT
// request line: a non-token byte in the method, another method, a bare LF.
func checkPartialLine(b []byte) error {
	sp := bytes.IndexByte(b, ' ')
	m := b
	if sp >= 0 {
		m = b[:sp]
	}
	for _, c := range m {
		if !isTchar(c) {
			return ErrBadRequest
		}
	}
	if sp == 0 {
		return ErrBadRequest
	}
	if sp > 0 && string(m) != "CONNECT" {
		return ErrMethodNotAllowed
	}
	return checkLineEndings(b)
}

// checkLineEndings rejects a bare LF, or a CR not followed by LF, in an incomplete head.
func checkLineEndings(b []byte) error {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return ErrBadRequest
		}
		if c == '\r' && i+1 < len(b) && b[i+1] != '\n' {
			return ErrBadRequest
		}
	}
	return nil
}

func parseRequestLine(line []byte) (Request, error) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return Request{}, ErrBadRequest
	}
	for _, c := range line[:sp1] {
		if !isTchar(c) {
			return Request{}, ErrBadRequest
		}
	}
	if string(line[:sp1]) != "CONNECT" {
		return Request{}, ErrMethodNotAllowed
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return Request{}, ErrBadRequest
	}
	target, version := rest[:sp2], rest[sp2+1:]
	switch string(version) {
	case "HTTP/1.1", "HTTP/1.0":
	default:
		if len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]) {
			return Request{}, ErrBadVersion
		}
		return Request{}, ErrBadRequest
	}
	return parseAuthority(target)
}

func parseAuthority(t []byte) (Request, error) {
	var host, port []byte
	if len(t) > 0 && t[0] == '[' {
		end := bytes.IndexByte(t, ']')
		if end < 0 {
			return Request{}, ErrBadTarget
		}
		host, t = t[1:end], t[end+1:]
		if len(t) == 0 || t[0] != ':' {
			return Request{}, ErrBadPort
		}
		port = t[1:]
		a, ok := parseAddr(host)
		if !ok || !a.Is6() {
			return Request{}, ErrBadTarget
		}
		p, err := parsePort(port)
		if err != nil {
			return Request{}, err
		}
		return Request{Addr: netip.AddrPortFrom(a, p), Port: p}, nil
	}
	c := bytes.LastIndexByte(t, ':')
	if c < 0 {
		if !policy.ValidHostname(t) && !isIPv4Literal(t) {
			return Request{}, ErrBadTarget
		}
		return Request{}, ErrBadPort
	}
	host, port = t[:c], t[c+1:]
	p, err := parsePort(port)
	if err != nil {
		return Request{}, err
	}
	if isIPv4Literal(host) {
		a, ok := parseIPv4(host)
		if !ok {
			return Request{}, ErrBadTarget
		}
		return Request{Addr: netip.AddrPortFrom(a, p), Port: p}, nil
	}
	if !policy.ValidHostname(host) {
		return Request{}, ErrBadTarget
	}
	return Request{Host: string(host), Port: p}, nil
}

func isIPv4Literal(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) && c != '.' {
			return false
		}
	}
	return true
}

// parseIPv4 parses a strict dotted quad (no leading zeros) without allocating.
func parseIPv4(s []byte) (netip.Addr, bool) {
	var a [4]byte
	k, v, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 || k > 3 {
				return netip.Addr{}, false
			}
			a[k], k, v, digits = byte(v), k+1, 0, 0
			continue
		}
		if !isDigit(s[i]) || (digits == 1 && v == 0) {
			return netip.Addr{}, false // a non-digit or a leading zero
		}
		v, digits = v*10+int(s[i]-'0'), digits+1
		if v > 255 {
			return netip.Addr{}, false
		}
	}
	if k != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 || bytes.IndexByte(b, '%') >= 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(b))
	return a, err == nil
}

func parsePort(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || b[0] == '0' {
		return 0, ErrBadPort
	}
	v := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, ErrBadPort
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, ErrBadPort
	}
	return uint16(v), nil
}

// parseHeaders checks header lines (h excludes the final empty line) and
// authenticates.
func parseHeaders(h []byte, verify auth.Verifier) (string, error) {
	var authz []byte
	seenAuth := false
	for len(h) > 0 {
		var line []byte
		if i := bytes.Index(h, crlf); i >= 0 {
			line, h = h[:i], h[i+2:]
		} else {
			line, h = h, nil
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return "", ErrBadHeader // obs-fold or stray empty line
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return "", ErrBadHeader
		}
		name := line[:colon]
		for _, c := range name {
			if !isTchar(c) {
				return "", ErrBadHeader // includes whitespace before the colon
			}
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return "", ErrBadHeader // bare CR/LF, NUL, other controls
			}
		}
		switch {
		case equalFold(name, "proxy-authorization"):
			if seenAuth {
				return "", ErrBadHeader
			}
			seenAuth, authz = true, value
		case equalFold(name, "content-length"):
			if string(value) != "0" {
				return "", ErrBadHeader
			}
		case equalFold(name, "transfer-encoding"):
			return "", ErrBadHeader
		}
	}
	if verify == nil {
		return "", nil
	}
	if !seenAuth {
		return "", ErrAuthRequired
	}
	return checkBasic(authz, verify)
}

// maxBasic is the longest base64 of "user:password" with both at auth.MaxLen.
const maxBasic = (2*auth.MaxLen + 1 + 2) / 3 * 4

func checkBasic(v []byte, verify auth.Verifier) (string, error) {
	sp := bytes.IndexByte(v, ' ')
	if sp < 0 || !equalFold(v[:sp], "basic") {
		return "", ErrAuthFailed
	}
	enc := trimOWS(v[sp+1:])
	if len(enc) == 0 || len(enc) > maxBasic {
		return "", ErrAuthFailed
	}
	// The decoded bytes go to an opaque Verifier, so a stack array would
	// escape to the heap on every request: reuse pooled ones instead.
	buf := basicBufs.Get().(*[maxBasic / 4 * 3]byte)
	defer func() {
		clear(buf[:])
		basicBufs.Put(buf)
	}()
	n, err := base64.StdEncoding.Decode(buf[:], enc)
	if err != nil {
		return "", ErrAuthFailed
	}
	user, pass, ok := bytes.Cut(buf[:n], []byte{':'})
	if !ok {
		return "", ErrAuthFailed
	}
	name := string(user)
	if len(user) == 0 || !verify(user, pass) {
		return name, ErrAuthFailed
	}
	return name, nil
}

var basicBufs = sync.Pool{New: func() any { return new([maxBasic / 4 * 3]byte) }}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with the lower-case ASCII string s, ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isTchar reports whether c may appear in an HTTP token (RFC 9110 5.6.2).
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Established is the reply that opens the tunnel.
const Established = "HTTP/1.1 200 Connection established\r\n\r\n"

// StatusFor maps a Parse error to its HTTP status.
func StatusFor(err error) int {
	switch {
	case err == nil:
		return 200
	case errors.Is(err, ErrHeadTooLarge):
		return 431
	case errors.Is(err, ErrMethodNotAllowed):
		return 405
	case errors.Is(err, ErrBadVersion):
		return 505
	case errors.Is(err, ErrAuthRequired), errors.Is(err, ErrAuthFailed):
		return 407
	}
	return 400
}

// AppendError appends the response for a Parse error.
func AppendError(b []byte, err error) []byte { return AppendResponse(b, StatusFor(err)) }

// AppendResponse appends a complete response with the given status: 200
// opens the tunnel; any other status says Connection: close, with
// Proxy-Authenticate on 407 and Allow on 405. Unknown codes become 500.
func AppendResponse(b []byte, status int) []byte {
	if status == 200 {
		return append(b, Established...)
	}
	var reason string
	switch status {
	case 400:
		reason = "Bad Request"
	case 403:
		reason = "Forbidden"
	case 405:
		reason = "Method Not Allowed"
	case 407:
		reason = "Proxy Authentication Required"
	case 431:
		reason = "Request Header Fields Too Large"
	case 502:
		reason = "Bad Gateway"
	case 503:
		reason = "Service Unavailable"
	case 504:
		reason = "Gateway Timeout"
	case 505:
		reason = "HTTP Version Not Supported"
	default:
		status, reason = 500, "Internal Server Error"
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	switch status {
	case 407:
		b = append(b, "Proxy-Authenticate: Basic realm=\""+Realm+"\"\r\n"...)
	case 405:
		b = append(b, "Allow: CONNECT\r\n"...)
	}
	return append(b, "Content-Length: 0\r\nConnection: close\r\n\r\n"...)
}

// DialStatus maps an upstream connect or resolve error to 504 (timeout) or 502.
func DialStatus(err error) int {
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return 200
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return 504
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout:
		return 504
	}
	return 502
}
