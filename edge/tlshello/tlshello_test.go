package tlshello

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// goHello is the ClientHello Go's crypto/tls sends for cfg, captured from a
// pipe.
func goHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		_ = tls.Client(c, cfg).Handshake()
		c.Close()
	}()
	var out []byte
	buf := make([]byte, 1<<16)
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := s.Read(buf)
		out = append(out, buf[:n]...)
		if _, perr := Parse(out); !errors.Is(perr, ErrNeedMore) || err != nil {
			return out
		}
	}
}

func readSeed(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bigALPN is a list of ALPN names that makes a ClientHello of more than
// 16 KiB (two records), as large post-quantum key shares can.
func bigALPN() []string {
	var p []string
	for i := range 84 {
		p = append(p, strings.Repeat(string(rune('a'+i%26)), 200))
	}
	return append(p, "h2")
}

// Real hellos: curl's, openssl s_client's and a browser's (captured from
// curl 7.88, OpenSSL 3.0 and headless Chromium 148 on Debian 12, in
// testdata: Chromium's has GREASE extensions, versions and groups, an ML-KEM
// key share and ECH GREASE) and
// Go's, small and over 16 KiB (two records); every prefix of each is
// ErrNeedMore, the whole is the names and protocols sent.
func TestRealHellos(t *testing.T) {
	for _, c := range []struct {
		name   string
		b      []byte
		sni    string
		alpn   []string
		ver    uint16
		minLen int
	}{
		{"curl", readSeed(t, "curl-7.88.bin"), "a.example", []string{"h2", "http/1.1"}, 0x0304, 500},
		{"curl-h2", readSeed(t, "curl-7.88-h2.bin"), "www.b.example", []string{"h2", "http/1.1"}, 0x0304, 500},
		{"openssl", readSeed(t, "openssl-3.0.bin"), "b.example", []string{"h2", "http/1.1"}, 0x0304, 300},
		{"chromium", readSeed(t, "chromium-148.bin"), "c.example", []string{"h2", "http/1.1"}, 0x0304, 1700},
		{"go", goHello(t, &tls.Config{ServerName: "Mixed.Case.Example", NextProtos: []string{"h2", "http/1.1"}}),
			"mixed.case.example", []string{"h2", "http/1.1"}, 0x0304, 200},
		{"go-tls12", goHello(t, &tls.Config{ServerName: "a.example", MaxVersion: tls.VersionTLS12}), "a.example", nil, 0x0303, 100},
		{"go-big", goHello(t, &tls.Config{ServerName: "big.a.example", NextProtos: bigALPN()}), "big.a.example", bigALPN(), 0x0304, 16 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			if len(c.b) < c.minLen {
				t.Fatalf("hello of %d bytes, want at least %d", len(c.b), c.minLen)
			}
			h, err := Parse(c.b)
			if err != nil || h.ServerName != c.sni || !slices.Equal(h.ALPN, c.alpn) || h.Version != c.ver || h.Len != len(c.b) {
				t.Fatalf("%+v %v; want %q %q %x len %d", h, err, c.sni, c.alpn, c.ver, len(c.b))
			}
			for i := range len(c.b) {
				if _, err := Parse(c.b[:i]); !errors.Is(err, ErrNeedMore) {
					t.Fatalf("prefix of %d bytes: %v", i, err)
				}
			}
			// Whatever follows the hello (early data, the next flight) is not read.
			if h2, err := Parse(append(slices.Clone(c.b), 23, 3, 3, 0, 1, 'x')); err != nil || h2.Len != len(c.b) {
				t.Fatalf("with bytes after it: %+v %v", h2, err)
			}
		})
	}
}

// refragment re-sends a one-record hello's payload in records of at most
// size bytes.
func refragment(b []byte, size int) []byte {
	p := b[recordHeaderLen:]
	var out []byte
	for len(p) > 0 {
		n := min(size, len(p))
		out = append(out, typeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, p[:n]...)
		p = p[n:]
	}
	return out
}

// A hello fragmented over many records (down to one byte each, as a
// hostile or odd client may) reads the same.
func TestFragmentedRecords(t *testing.T) {
	b := readSeed(t, "curl-7.88-h2.bin")
	for _, size := range []int{1, 2, 3, 4, 5, 100, 511} {
		f := refragment(b, size)
		h, err := Parse(f)
		if err != nil || h.ServerName != "www.b.example" || h.Len != len(f) {
			t.Fatalf("records of %d: %+v %v", size, h, err)
		}
		for i := range len(f) {
			if _, err := Parse(f[:i]); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("records of %d, prefix %d: %v", size, i, err)
			}
		}
	}
}

// hello builds a ClientHello record with the given extensions block
// (nil: no extensions field at all).
func hello(exts []byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)             // session id
	body = append(body, 0, 2, 0x13, 1) // one suite
	body = append(body, 1, 0)          // null compression
	if exts != nil {
		body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
		body = append(body, exts...)
	}
	m := append([]byte{typeClientHello, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{typeHandshake, 3, 1, byte(len(m) >> 8), byte(len(m))}, m...)
}

func ext(typ uint16, data ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func sni(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
		list = append(list, n...)
	}
	return ext(extServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...)...)
}

func alpn(protos ...string) []byte {
	var list []byte
	for _, p := range protos {
		list = append(list, byte(len(p)))
		list = append(list, p...)
	}
	return ext(extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...)...)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// Each way a hello can be wrong is refused with the right error, and the
// corner cases that are right are read.
func TestMalformed(t *testing.T) {
	ok := hello(cat(sni("a.example"), alpn("h2")))
	if h, err := Parse(ok); err != nil || h.ServerName != "a.example" || !slices.Equal(h.ALPN, []string{"h2"}) || h.Version != 0x0303 {
		t.Fatalf("the reference hello: %+v %v", h, err)
	}
	grease := []byte{0x0a, 0x0a}
	for _, c := range []struct {
		name string
		b    []byte
		err  error
		sni  string
		alpn []string
	}{
		{"no extensions", hello(nil), nil, "", nil},
		{"empty extensions", hello([]byte{}), nil, "", nil},
		{"GREASE extension and ALPN", hello(cat(ext(0x1a1a), alpn(string(grease), "h2"), sni("A.Example"))), nil, "a.example", []string{"h2"}},
		{"GREASE versions", hello(ext(extSupportedVersions, 4, 0x2a, 0x2a, 3, 4)), nil, "", nil},
		{"other name types ignored", hello(ext(extServerName, 0, 5, 1, 0, 2, 'x', 'y')), nil, "", nil},
		{"SSLv2 hello", []byte{0x80, 0x2e, 1, 0, 2}, ErrSSLv2, "", nil},
		{"SSLv2-ish other", []byte{0x80, 0x2e, 9}, ErrNotTLS, "", nil},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), ErrNotTLS, "", nil},
		{"alert record", []byte{21, 3, 1, 0, 2, 2, 40}, ErrNotTLS, "", nil},
		{"record version 2", []byte{22, 2, 0, 0, 5}, ErrMalformed, "", nil},
		{"record version 2, early", []byte{22, 2, 0}, ErrMalformed, "", nil},
		{"zero-length record", []byte{22, 3, 1, 0, 0}, ErrMalformed, "", nil},
		{"record over 2^14", []byte{22, 3, 1, 0x40, 1}, ErrMalformed, "", nil},
		{"not a ClientHello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, ErrMalformed, "", nil},
		{"not a ClientHello, early", []byte{22, 3, 1, 0, 40, 2, 0, 0, 40}, ErrMalformed, "", nil},
		{"body too short", []byte{22, 3, 1, 0, 5, 1, 0, 0, 1, 3}, ErrMalformed, "", nil},
		{"alert between fragments", cat(refragment(ok, 10)[:15], []byte{21, 3, 1, 0, 2, 2, 40}), ErrMalformed, "", nil},
		{"trailing bytes in body", func() []byte {
			b := hello(sni("a.example"))
			b = append(b, 0)
			b[4]++
			b[8]++
			return b
		}(), ErrMalformed, "", nil},
		{"duplicate extension", hello(cat(sni("a.example"), sni("b.example"))), ErrMalformed, "", nil},
		{"two host names", hello(sni("a.example", "b.example")), ErrMalformed, "", nil},
		{"empty host name", hello(sni("")), ErrMalformed, "", nil},
		{"trailing dot", hello(sni("a.example.")), ErrMalformed, "", nil},
		{"NUL in the name", hello(sni("a\x00.example")), ErrMalformed, "", nil},
		{"space in the name", hello(sni("a .example")), ErrMalformed, "", nil},
		{"empty SNI list", hello(ext(extServerName, 0, 0)), ErrMalformed, "", nil},
		{"SNI list overruns", hello(ext(extServerName, 0, 9, 0, 0, 1, 'a')), ErrMalformed, "", nil},
		{"empty ALPN name", hello(ext(extALPN, 0, 1, 0)), ErrMalformed, "", nil},
		{"empty ALPN list", hello(ext(extALPN, 0, 0)), ErrMalformed, "", nil},
		{"odd versions", hello(ext(extSupportedVersions, 3, 3, 4, 3)), ErrMalformed, "", nil},
		{"extension overruns", hello([]byte{0, 0, 0, 9, 0}), ErrMalformed, "", nil},
	} {
		h, err := Parse(c.b)
		if !errors.Is(err, c.err) && !(c.err == nil && err == nil) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.err)
		}
		if c.err == nil && (h.ServerName != c.sni || !slices.Equal(h.ALPN, c.alpn)) {
			t.Fatalf("%s: %+v", c.name, h)
		}
	}
}
