package httphost

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
)

// Errors. ErrNeedMore is not a failure: the bytes so far are a valid prefix.
var (
	ErrNeedMore  = errors.New("httphost: need more bytes")
	ErrNotHTTP   = errors.New("httphost: not an HTTP/1.x request")
	ErrMalformed = errors.New("httphost: malformed HTTP request")
)

// methods are the request methods that make a connection HTTP (RFC 9110
// §9 and PATCH); anything else is another protocol.
var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// IsStart reports whether b can begin an HTTP/1.x request: it is, or
// starts with, one of the methods and a space. more is true when b is too
// short to tell (a prefix of "METHOD ").
func IsStart(b []byte) (ok, more bool) {
	for _, m := range methods {
		switch {
		case len(b) > len(m) && string(b[:len(m)]) == m && b[len(m)] == ' ':
			return true, false
		case len(b) <= len(m) && m[:len(b)] == string(b):
			more = true
		}
	}
	return false, more
}

// Parse returns the lower-cased host (without port) the request at the
// start of b is for: the absolute-form target's authority if it has one
// (RFC 9112 §3.2.2: then Host is ignored), else the Host header; "" when
// the head ended without either (HTTP/1.0).
func Parse(b []byte) (string, error) {
	if ok, more := IsStart(b); !ok {
		if more {
			return "", ErrNeedMore
		}
		return "", ErrNotHTTP
	}
	line, rest, ok := cutLine(b)
	if !ok {
		return "", ErrNeedMore
	}
	method, line, _ := strings.Cut(line, " ")
	target, version, ok := strings.Cut(line, " ")
	if !ok || target == "" || (version != "HTTP/1.1" && version != "HTTP/1.0") || strings.ContainsAny(target, " \t") {
		return "", ErrMalformed
	}
	if scheme, a, ok := strings.Cut(target, "://"); ok && method != "CONNECT" && isScheme(scheme) {
		a, _, _ = strings.Cut(a, "/")
		a, _, _ = strings.Cut(a, "?")
		if h := hostOf(a); h != "" {
			return h, nil // absolute form: Host does not count
		}
		return "", ErrMalformed
	}
	host, seen := "", false
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return "", ErrNeedMore
		}
		if line == "" { // the end of the head
			return host, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "", ErrMalformed // obsolete line folding
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return "", ErrMalformed
		}
		if !strings.EqualFold(name, "host") {
			continue
		}
		if seen {
			return "", ErrMalformed
		}
		seen = true
		v := strings.Trim(value, " \t")
		if host = hostOf(v); host == "" && v != "" {
			return "", ErrMalformed
		}
	}
}

// cutLine splits off the first line (CRLF or a bare LF ends it).
func cutLine(b []byte) (string, []byte, bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return "", nil, false
	}
	return strings.TrimSuffix(string(b[:i]), "\r"), b[i+1:], true
}

// hostOf is the host of an authority (host, host:port, [v6], [v6]:port),
// lower-cased; "" if it is not one. A name is letters, digits, '-', '_'
// and '.'; a bracketed one must be an IPv6 address.
func hostOf(a string) string {
	h, port := a, ""
	if strings.HasPrefix(a, "[") {
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return ""
		}
		h, port = a[1:end], a[end+1:]
		if ip, err := netip.ParseAddr(h); err != nil || !ip.Is6() {
			return ""
		}
		if port != "" && (port[0] != ':' || !digits(port[1:])) {
			return ""
		}
		return strings.ToLower(h)
	}
	if i := strings.IndexByte(a, ':'); i >= 0 {
		h, port = a[:i], a[i+1:]
		if !digits(port) {
			return ""
		}
	}
	if h == "" {
		return ""
	}
	for _, c := range []byte(h) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return ""
		}
	}
	return strings.ToLower(h)
}

// isScheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1).
func isScheme(s string) bool {
	for i, c := range []byte(s) {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

func digits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
