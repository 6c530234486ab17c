package httpconnect

import (
	"errors"
	"fmt"
	"testing"
)

// FuzzHTTPConnect checks that Parse never panics or over-consumes, that a
// successful head is never reported as anything but ErrNeedMore for any of
// its proper prefixes (so a loop fed byte by byte reaches the same result),
// that payload after the head is ignored, and that a parsed target written
// back as a CONNECT line parses to the same request. The first input byte
// selects authentication and a small MaxHead.
func FuzzHTTPConnect(f *testing.F) {
	for _, s := range []string{
		curlHead, curlHeadAuth,
		"CONNECT [::1]:443 HTTP/1.1\r\n\r\n\x16\x03\x01",
		"CONNECT 127.0.0.1:80 HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT a\r\n.test:1 HTTP/1.1\r\n\r\n",
	} {
		f.Add(byte(0), []byte(s))
		f.Add(byte(1), []byte(s))
	}
	verify := creds(f)
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		cfg := Config{}
		if mode&1 == 1 {
			cfg.Verify = verify
		}
		if mode&2 == 2 {
			cfg.MaxHead = 64
		}
		req, n, err := Parse(data, cfg)
		if n < 0 || n > len(data) || (err != nil && n != 0) || (err == nil && n == 0) {
			t.Fatalf("n=%d len=%d err=%v", n, len(data), err)
		}
		if err != nil {
			if !errors.Is(err, ErrNeedMore) && StatusFor(err) == 200 {
				t.Fatalf("error %v maps to 200", err)
			}
			return
		}
		max := cfg.MaxHead
		if max == 0 {
			max = DefaultMaxHead
		}
		if n > max {
			t.Fatalf("head %d > max %d", n, max)
		}
		if (req.Host == "") == !req.Addr.IsValid() || req.Port == 0 {
			t.Fatalf("inconsistent request %+v", req)
		}
		req2, n2, err := Parse(data[:n], cfg)
		if err != nil || n2 != n || req2 != req {
			t.Fatalf("head alone: %+v %d %v", req2, n2, err)
		}
		for _, k := range []int{0, 1, n / 2, n - 2, n - 1} {
			if k < 0 {
				continue
			}
			if _, _, err := Parse(data[:k], cfg); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("prefix %d of %d: %v", k, n, err)
			}
		}
		// Round trip the target.
		host := req.Host
		if host == "" {
			host = req.Addr.Addr().String()
			if req.Addr.Addr().Is6() {
				host = "[" + host + "]"
			}
		}
		line := fmt.Sprintf("CONNECT %s:%d HTTP/1.1\r\n\r\n", host, req.Port)
		req3, _, err := Parse([]byte(line), Config{})
		req.User = "" // the round trip sends no credentials
		if err != nil || req3 != req {
			t.Fatalf("round trip %q: %+v %v, want %+v", line, req3, err, req)
		}
	})
}
