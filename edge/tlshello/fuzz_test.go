package tlshello

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any input gives ErrNeedMore, a Hello or one of the sentinel
// errors, never a panic; a Hello covers at most the input, its name is
// lower-case printable ASCII, and it reads the same from exactly its own
// records, while every shorter prefix of those is ErrNeedMore or already
// refused (the caller can never route on a partial hello).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"curl-7.88.bin", "curl-7.88-h2.bin", "openssl-3.0.bin", "chromium-148.bin"} {
		b := readSeed(f, s)
		f.Add(b)
		f.Add(refragment(b, 7))
	}
	f.Add(goHello(f, &tls.Config{ServerName: "a.example", NextProtos: []string{"h2"}}))
	f.Add(hello(cat(sni("a.example"), alpn("h2", "\x0a\x0a"), ext(extSupportedVersions, 2, 3, 4))))
	f.Add([]byte{0x80, 0x2e, 1})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrNeedMore) && !errors.Is(err, ErrNotTLS) && !errors.Is(err, ErrSSLv2) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if h.Len <= 0 || h.Len > len(b) {
			t.Fatalf("Len %d of %d bytes", h.Len, len(b))
		}
		if h.ServerName != strings.ToLower(h.ServerName) || strings.ContainsFunc(h.ServerName, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("server name %q", h.ServerName)
		}
		again, err := Parse(b[:h.Len])
		if err != nil || again.ServerName != h.ServerName || strings.Join(again.ALPN, ",") != strings.Join(h.ALPN, ",") || again.Version != h.Version {
			t.Fatalf("from its own records: %+v %v, first %+v", again, err, h)
		}
		for _, n := range []int{0, 1, 5, h.Len / 2, h.Len - 1} {
			if n < 0 || n >= h.Len {
				continue
			}
			if _, err := Parse(b[:n]); err == nil {
				t.Fatalf("a prefix of %d of %d bytes parsed", n, h.Len)
			}
		}
	})
}
