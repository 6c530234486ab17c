package socks5

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzSOCKS5 checks that Feed never panics, never over-consumes, and that
// feeding one byte at a time reaches exactly the same outcome (consumed
// bytes, replies, error, request) as feeding everything at once. A parsed
// request re-encoded by a client encoder parses back to the same request.
// The first input byte selects whether user/pass is required.
func FuzzSOCKS5(f *testing.F) {
	for _, v := range vecs() {
		mode := byte(0)
		if v.verify {
			mode = 1
		}
		f.Add(append([]byte{mode}, unhex(f, v.in+"474554")...))
	}
	f.Add(append([]byte{0}, unhex(f, "050100 05020001 7f000001 0050")...))
	f.Add(append([]byte{1}, unhex(f, "050102 01 04 75736572 04 78787878")...))
	f.Add(append([]byte{0}, unhex(f, "050100 05010003 0b 6578616d0d0a706c652e74 0050")...))
	verify := creds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		cfg := Config{}
		if data[0]&1 == 1 {
			cfg.Verify = verify
		}
		data = data[1:]
		s := New(cfg)
		n, out, err := s.Feed(data, nil)
		if n < 0 || n > len(data) {
			t.Fatalf("consumed %d of %d", n, len(data))
		}
		if err == nil && !s.Done() {
			t.Fatal("nil error but not done")
		}

		s2 := New(cfg)
		var buf, out2 []byte
		n2 := 0
		var err2 error = ErrNeedMore
		for i := 0; i < len(data) && errors.Is(err2, ErrNeedMore); i++ {
			buf = append(buf, data[i])
			var k int
			var o []byte
			k, o, err2 = s2.Feed(buf, nil)
			out2 = append(out2, o...)
			n2 += k
			buf = buf[k:]
		}
		if n2 != n || !bytes.Equal(out, out2) || (err == nil) != (err2 == nil) || (err != nil && !errors.Is(err2, err)) {
			t.Fatalf("whole: n=%d out=%x err=%v; bytewise: n=%d out=%x err=%v", n, out, err, n2, out2, err2)
		}
		if err != nil {
			return
		}
		req := s.Request()
		if req != s2.Request() {
			t.Fatalf("requests differ: %+v vs %+v", req, s2.Request())
		}
		if (req.Host == "") == !req.Addr.IsValid() || req.Port == 0 && req.Addr.Port() != 0 {
			t.Fatalf("inconsistent request %+v", req)
		}
		// Round trip: encode as a client would and parse again.
		enc := []byte{Version, 1, MethodNoAuth, Version, CmdConnect, 0}
		if req.Host != "" {
			enc = append(enc, AtypDomain, byte(len(req.Host)))
			enc = append(enc, req.Host...)
		} else if a := req.Addr.Addr(); a.Is4() {
			a4 := a.As4()
			enc = append(append(enc, AtypIPv4), a4[:]...)
		} else {
			a16 := a.As16()
			enc = append(append(enc, AtypIPv6), a16[:]...)
		}
		enc = append(enc, byte(req.Port>>8), byte(req.Port))
		s3 := New(Config{})
		if k, _, err := s3.Feed(enc, nil); err != nil || k != len(enc) || s3.Request() != req {
			t.Fatalf("round trip %x: %v %+v vs %+v", enc, err, s3.Request(), req)
		}
	})
}
