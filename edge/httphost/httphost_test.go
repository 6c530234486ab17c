package httphost

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		err  error
	}{
		{"GET / HTTP/1.1\r\nHost: WWW.Example\r\n\r\n", "www.example", nil},
		{"GET / HTTP/1.1\r\nUser-Agent: x\r\nhost:www.example:8080\r\nAccept: */*\r\n\r\nbody", "www.example", nil},
		{"POST /x HTTP/1.1\nHost: [::1]:80\n\n", "::1", nil},
		{"GET / HTTP/1.0\r\n\r\n", "", nil},
		{"GET / HTTP/1.1\r\nHost:\r\n\r\n", "", nil},
		{"GET http://Abs.Example:81/p?q HTTP/1.1\r\nHost: other\r\n", "abs.example", nil},
		{"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", "a.example", nil},
		{"", "", ErrNeedMore},
		{"G", "", ErrNeedMore},
		{"GET", "", ErrNeedMore},
		{"GET / HTTP/1.1\r\nHost: a.example\r\n", "", ErrNeedMore},
		{"GET / HTTP/1.1\r\nHost: a", "", ErrNeedMore},
		{"SSH-2.0-OpenSSH\r\n", "", ErrNotHTTP},
		{"\x16\x03\x01", "", ErrNotHTTP},
		{"GETX / HTTP/1.1\r\n", "", ErrNotHTTP},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "", ErrNotHTTP},
		{"GET / HTTP/2.0\r\n\r\n", "", ErrMalformed},
		{"GET  / HTTP/1.1\r\n\r\n", "", ErrMalformed},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "", ErrMalformed},
		{"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", "", ErrMalformed},
		{"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", "", ErrMalformed},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "", ErrMalformed},
		{"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", "", ErrMalformed},
		{"GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", "", ErrMalformed},
		{"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", "", ErrMalformed},
		{"GET http:///x HTTP/1.1\r\n\r\n", "", ErrMalformed},
	} {
		h, err := Parse([]byte(c.in))
		if h != c.host || !errors.Is(err, c.err) && !(err == nil && c.err == nil) {
			t.Errorf("%q: %q %v, want %q %v", c.in, h, err, c.host, c.err)
		}
	}
}

// FuzzParse: never a panic, only the sentinels; a host is lower-case and
// what net/http's own reader takes as the request's host when it reads
// the same head (the independent oracle), and a prefix of the head that
// gave it is never answered with another host.
func FuzzParse(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: WWW.Example\r\n\r\n"))
	f.Add([]byte("GET http://a.example/ HTTP/1.1\r\nHost: b\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: [::1]:8\r\nContent-Length: 3\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrNotHTTP) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if h != strings.ToLower(h) {
			t.Fatalf("host %q", h)
		}
		for i := range len(b) {
			if h2, err := Parse(b[:i]); err == nil && h2 != h {
				t.Fatalf("prefix %d: %q, whole: %q", i, h2, h)
			}
		}
		req, rerr := http.ReadRequest(newReader(b))
		if rerr == nil && req.Method != "CONNECT" && req.Host != "" {
			want := strings.ToLower(req.Host)
			if i := strings.LastIndexByte(want, ':'); i >= 0 && !strings.HasSuffix(want, "]") {
				want = want[:i]
			}
			want = strings.TrimSuffix(strings.TrimPrefix(want, "["), "]")
			if h != want {
				t.Fatalf("host %q, net/http read %q", h, req.Host)
			}
		}
	})
}

func newReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
