package httpconnect

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/relayd/relayd/edge/auth"
)

func creds(t testing.TB) auth.Verifier {
	c, err := auth.NewCredentials(map[string]string{"user": "pass"})
	if err != nil {
		t.Fatal(err)
	}
	return c.Verify
}

// Heads as curl 7.88 sends them (TestCurl asserts these exact bytes).
const (
	curlHead = "CONNECT example.test:8080 HTTP/1.1\r\n" +
		"Host: example.test:8080\r\n" +
		"User-Agent: curl/7.88.1\r\n" +
		"Proxy-Connection: Keep-Alive\r\n\r\n"
	curlHeadAuth = "CONNECT example.test:8080 HTTP/1.1\r\n" +
		"Host: example.test:8080\r\n" +
		"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n" +
		"User-Agent: curl/7.88.1\r\n" +
		"Proxy-Connection: Keep-Alive\r\n\r\n"
)

func TestParseVectors(t *testing.T) {
	const payload = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" // a TLS ClientHello sent right after the head
	for _, tc := range []struct {
		name   string
		head   string
		verify bool
		want   Request
	}{
		{"curl", curlHead, false, Request{Host: "example.test", Port: 8080}},
		{"curl with auth", curlHeadAuth, true, Request{Host: "example.test", Port: 8080, User: "user"}},
		{"no headers", "CONNECT example.test:443 HTTP/1.1\r\n\r\n", false, Request{Host: "example.test", Port: 443}},
		{"http/1.0", "CONNECT example.test:443 HTTP/1.0\r\n\r\n", false, Request{Host: "example.test", Port: 443}},
		{"ipv4", "CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n", false,
			Request{Addr: netip.MustParseAddrPort("127.0.0.1:80"), Port: 80}},
		{"ipv4 zeros", "CONNECT 0.0.0.0:80 HTTP/1.1\r\n\r\n", false,
			Request{Addr: netip.MustParseAddrPort("0.0.0.0:80"), Port: 80}},
		{"ipv4 max", "CONNECT 255.255.255.255:80 HTTP/1.1\r\n\r\n", false,
			Request{Addr: netip.MustParseAddrPort("255.255.255.255:80"), Port: 80}},
		{"ipv6", "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", false,
			Request{Addr: netip.MustParseAddrPort("[::1]:443"), Port: 443}},
		{"mapped ipv6", "CONNECT [::ffff:127.0.0.1]:443 HTTP/1.1\r\n\r\n", false,
			Request{Addr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:443"), Port: 443}},
		{"auth header case and spacing", "CONNECT a.test:1 HTTP/1.1\r\nPROXY-AUTHORIZATION:\tbasic   dXNlcjpwYXNz \r\n\r\n", true,
			Request{Host: "a.test", Port: 1, User: "user"}},
		{"content-length 0", "CONNECT a.test:65535 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", false,
			Request{Host: "a.test", Port: 65535}},
		{"auth ignored when not configured", "CONNECT a.test:1 HTTP/1.1\r\nProxy-Authorization: Basic !!\r\n\r\n", false,
			Request{Host: "a.test", Port: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}
			if tc.verify {
				cfg.Verify = creds(t)
			}
			in := []byte(tc.head + payload)
			req, n, err := Parse(in, cfg)
			if err != nil || n != len(tc.head) || string(in[n:]) != payload || req != tc.want {
				t.Fatalf("Parse = %+v, %d, %v; want %+v, %d", req, n, err, tc.want, len(tc.head))
			}
			for k := range len(tc.head) {
				if _, n, err := Parse([]byte(tc.head[:k]), cfg); !errors.Is(err, ErrNeedMore) || n != 0 {
					t.Fatalf("prefix %d (%q): %d %v", k, tc.head[:k], n, err)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	big := "CONNECT a.test:1 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", DefaultMaxHead) + "\r\n\r\n"
	for _, tc := range []struct {
		name   string
		in     string
		verify bool
		want   error
		status int
	}{
		{"GET", "GET / HTTP/1.1\r\n\r\n", false, ErrMethodNotAllowed, 405},
		{"GET partial", "GET /", false, ErrMethodNotAllowed, 405},
		{"absolute GET", "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", false, ErrMethodNotAllowed, 405},
		{"lowercase connect", "connect a.test:1 HTTP/1.1\r\n\r\n", false, ErrMethodNotAllowed, 405},
		{"tls to http port", "\x16\x03\x01\x02\x00", false, ErrBadRequest, 400},
		{"leading space", " CONNECT a.test:1 HTTP/1.1\r\n\r\n", false, ErrBadRequest, 400},
		{"bare LF early", "CONNECT a.test:1 HTTP/1.1\n", false, ErrBadRequest, 400},
		{"bare LF in headers", "CONNECT a.test:1 HTTP/1.1\r\nHost: a\nX: y", false, ErrBadRequest, 400},
		{"bare CR", "CONNECT a.test:1\rHTTP/1.1\r\n\r\n", false, ErrBadRequest, 400},
		{"two spaces", "CONNECT  a.test:1 HTTP/1.1\r\n\r\n", false, ErrBadRequest, 400},
		{"no version", "CONNECT a.test:1\r\n\r\n", false, ErrBadRequest, 400},
		{"http/2", "CONNECT a.test:1 HTTP/2.0\r\n\r\n", false, ErrBadVersion, 505},
		{"http/1.2", "CONNECT a.test:1 HTTP/1.2\r\n\r\n", false, ErrBadVersion, 505},
		{"garbage version", "CONNECT a.test:1 HTTQ/1.1\r\n\r\n", false, ErrBadRequest, 400},
		{"missing port", "CONNECT a.test HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"missing port v6", "CONNECT [::1] HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"empty port", "CONNECT a.test: HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"port 0", "CONNECT a.test:0 HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"port 65536", "CONNECT a.test:65536 HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"port leading zero", "CONNECT a.test:080 HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"port sign", "CONNECT a.test:+80 HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"empty host", "CONNECT :80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"unbracketed v6", "CONNECT ::1:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"v6 zone", "CONNECT [fe80::1%25eth0]:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"v4 in brackets", "CONNECT [127.0.0.1]:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"bad v4", "CONNECT 127.0.0.256:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"v4 leading zero", "CONNECT 127.0.0.01:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"v4 five octets", "CONNECT 1.2.3.4.5:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"v4 empty octet", "CONNECT 1..3.4:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"numeric name", "CONNECT 2130706433:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"percent in name", "CONNECT a%0d%0ab.test:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"userinfo", "CONNECT u@a.test:80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"absolute url", "CONNECT http://a.test:80/ HTTP/1.1\r\n\r\n", false, ErrBadPort, 400},
		{"10000-byte host", "CONNECT " + strings.Repeat("a", 10000) + ":80 HTTP/1.1\r\n\r\n", false, ErrHeadTooLarge, 431},
		{"10000-byte host, big limit", "CONNECT " + strings.Repeat("a", 10000) + ":80 HTTP/1.1\r\n\r\n", false, ErrBadTarget, 400},
		{"head too large", big, false, ErrHeadTooLarge, 431},
		{"obs-fold", "CONNECT a.test:1 HTTP/1.1\r\nX: a\r\n b\r\n\r\n", false, ErrBadHeader, 400},
		{"space before colon", "CONNECT a.test:1 HTTP/1.1\r\nHost : a\r\n\r\n", false, ErrBadHeader, 400},
		{"no colon", "CONNECT a.test:1 HTTP/1.1\r\nHost\r\n\r\n", false, ErrBadHeader, 400},
		{"NUL in value", "CONNECT a.test:1 HTTP/1.1\r\nX: a\x00b\r\n\r\n", false, ErrBadHeader, 400},
		{"body", "CONNECT a.test:1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", false, ErrBadHeader, 400},
		{"chunked", "CONNECT a.test:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", false, ErrBadHeader, 400},
		{"no auth", curlHead, true, ErrAuthRequired, 407},
		{"wrong password", "CONNECT a.test:1 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpub3Bl\r\n\r\n", true, ErrAuthFailed, 407},
		{"not basic", "CONNECT a.test:1 HTTP/1.1\r\nProxy-Authorization: Bearer dXNlcjpwYXNz\r\n\r\n", true, ErrAuthFailed, 407},
		{"bad base64", "CONNECT a.test:1 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXN\r\n\r\n", true, ErrAuthFailed, 407},
		{"no colon in creds", "CONNECT a.test:1 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcg==\r\n\r\n", true, ErrAuthFailed, 407},
		{"huge creds", "CONNECT a.test:1 HTTP/1.1\r\nProxy-Authorization: Basic " + strings.Repeat("QUFB", 400) + "\r\n\r\n", true, ErrAuthFailed, 407},
		{"duplicate auth", "CONNECT a.test:1 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n", true, ErrBadHeader, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}
			if tc.verify {
				cfg.Verify = creds(t)
			}
			if strings.HasSuffix(tc.name, "big limit") {
				cfg.MaxHead = 64 << 10
			}
			_, n, err := Parse([]byte(tc.in), cfg)
			if !errors.Is(err, tc.want) || n != 0 {
				t.Fatalf("Parse: n=%d err=%v, want %v", n, err, tc.want)
			}
			if s := StatusFor(err); s != tc.status {
				t.Fatalf("StatusFor = %d, want %d", s, tc.status)
			}
		})
	}
}

// An oversized head is reported exactly when MaxHead bytes are buffered, not before.
func TestMaxHeadBoundary(t *testing.T) {
	cfg := Config{MaxHead: 64}
	head := "CONNECT a.test:1 HTTP/1.1\r\nX: " + strings.Repeat("a", 64-30-4) + "\r\n\r\n"
	if len(head) != 64 {
		t.Fatalf("fixture %d", len(head))
	}
	if _, n, err := Parse([]byte(head), cfg); err != nil || n != 64 {
		t.Fatalf("exactly MaxHead: %d %v", n, err)
	}
	long := head[:60] + "a\r\n\r\n" // 65 bytes
	if _, _, err := Parse([]byte(long[:63]), cfg); !errors.Is(err, ErrNeedMore) {
		t.Fatalf("63 bytes: %v", err)
	}
	if _, _, err := Parse([]byte(long[:64]), cfg); !errors.Is(err, ErrHeadTooLarge) {
		t.Fatalf("64 bytes, incomplete: %v", err)
	}
	if _, _, err := Parse([]byte(long), cfg); !errors.Is(err, ErrHeadTooLarge) {
		t.Fatalf("65-byte head: %v", err)
	}
}

func TestResponses(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{200, "HTTP/1.1 200 Connection established\r\n\r\n"},
		{400, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{403, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{405, "HTTP/1.1 405 Method Not Allowed\r\nAllow: CONNECT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{407, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"relayd\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{431, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{502, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{504, "HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{505, "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{299, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
	} {
		if got := string(AppendResponse(nil, tc.status)); got != tc.want {
			t.Errorf("AppendResponse(%d) = %q, want %q", tc.status, got, tc.want)
		}
	}
	if got := string(AppendError(nil, ErrAuthRequired)); !strings.HasPrefix(got, "HTTP/1.1 407 ") {
		t.Errorf("AppendError(ErrAuthRequired) = %q", got)
	}
}

func BenchmarkParse(b *testing.B) {
	cfg := Config{Verify: creds(b)}
	in := []byte("CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nUser-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(in, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// A head refused for its credentials still says what it asked for and who
// asked, for the log; a successful one names its user.
func TestAuthRefusedKeepsRequest(t *testing.T) {
	cfg := Config{Verify: creds(t)}
	for _, c := range []struct {
		head     string
		wantErr  error
		wantUser string
	}{
		{"CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjp3cm9uZw==\r\n\r\n", ErrAuthFailed, "user"}, // user:wrong
		{"CONNECT a.test:443 HTTP/1.1\r\n\r\n", ErrAuthRequired, ""},
		{"CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n", nil, "user"},
	} {
		r, _, err := Parse([]byte(c.head), cfg)
		if !errors.Is(err, c.wantErr) || r.Host != "a.test" || r.Port != 443 || r.User != c.wantUser {
			t.Fatalf("%q: %+v %v", c.head, r, err)
		}
	}
}
