package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

const payload = "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// haproxyV2 is a header captured from HAProxy send-proxy-v2 (TCP4
// 172.19.0.1:42578 -> 172.19.0.3:80), followed by the client's request.
const haproxyV2 = "0d0a0d0a000d0a515549540a 2111000c ac130001 ac130003 a652 0050"

var (
	ap = netip.MustParseAddrPort
)

type vector struct {
	name   string
	in     []byte
	accept Version
	want   Header
}

func vectors(t testing.TB) []vector {
	v6max := "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	return []vector{
		{"v1 spec example", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), V1,
			Header{Version: V1, Command: Proxy, Family: INET, Src: ap("192.168.0.1:56324"), Dst: ap("192.168.0.11:443")}},
		{"v1 tcp6 worst case", []byte("PROXY TCP6 " + v6max + " " + v6max + " 65535 65535\r\n"), Any,
			Header{Version: V1, Command: Proxy, Family: INET6, Src: ap("[" + v6max + "]:65535"), Dst: ap("[" + v6max + "]:65535")}},
		{"v1 tcp6 short", []byte("PROXY TCP6 2001:db8::1 ::1 0 8080\r\n"), V1,
			Header{Version: V1, Command: Proxy, Family: INET6, Src: ap("[2001:db8::1]:0"), Dst: ap("[::1]:8080")}},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), V1, Header{Version: V1, Command: Proxy}},
		{"v1 unknown 107 bytes", []byte("PROXY UNKNOWN " + v6max + " " + v6max + " 65535 65535\r\n"), Any,
			Header{Version: V1, Command: Proxy}},
		{"v2 haproxy tcp4", unhex(t, haproxyV2), V2,
			Header{Version: V2, Command: Proxy, Family: INET, Src: ap("172.19.0.1:42578"), Dst: ap("172.19.0.3:80")}},
		{"v2 tcp6", unhex(t, "0d0a0d0a000d0a515549540a 2121 0024"+
			"20010db8000000000000000000000001 00000000000000000000000000000001 1f90 01bb"), Any,
			Header{Version: V2, Command: Proxy, Family: INET6, Src: ap("[2001:db8::1]:8080"), Dst: ap("[::1]:443")}},
		{"v2 local", unhex(t, "0d0a0d0a000d0a515549540a 2000 0000"), Any, Header{Version: V2, Command: Local}},
		{"v2 local ignores block", unhex(t, "0d0a0d0a000d0a515549540a 20ff 0003 010203"), V2, Header{Version: V2, Command: Local}},
		{"v2 unix", unhex(t, "0d0a0d0a000d0a515549540a 2131 00d8"+strings.Repeat("00", 216)), V2,
			Header{Version: V2, Command: Proxy, Family: Unix}},
		{"v2 tlvs", unhex(t, "0d0a0d0a000d0a515549540a 2111 0016 7f000001 7f000002 0001 0002 "+
			"0400 00 0200 04 61626364"), V2,
			Header{Version: V2, Command: Proxy, Family: INET, Src: ap("127.0.0.1:1"), Dst: ap("127.0.0.2:2"),
				TLVs: unhex(t, "040000 020004 61626364")}},
	}
}

func sameHeader(a, b Header) bool {
	return a.Version == b.Version && a.Command == b.Command && a.Family == b.Family &&
		a.Src == b.Src && a.Dst == b.Dst && bytes.Equal(a.TLVs, b.TLVs)
}

func TestParseVectors(t *testing.T) {
	for _, v := range vectors(t) {
		t.Run(v.name, func(t *testing.T) {
			in := append(append([]byte(nil), v.in...), payload...)
			h, n, err := Parse(in, v.accept)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n != len(v.in) || string(in[n:]) != payload {
				t.Fatalf("consumed %d, want %d (payload must stay)", n, len(v.in))
			}
			if !sameHeader(h, v.want) {
				t.Fatalf("got %+v\nwant %+v", h, v.want)
			}
			// Every split: each proper prefix needs more, the header alone parses the same.
			for k := range len(v.in) {
				if _, n, err := Parse(v.in[:k], v.accept); !errors.Is(err, ErrNeedMore) || n != 0 {
					t.Fatalf("prefix %d: n=%d err=%v, want ErrNeedMore", k, n, err)
				}
			}
			h2, n2, err := Parse(v.in, v.accept)
			if err != nil || n2 != n || !sameHeader(h, h2) {
				t.Fatalf("exact buffer: %+v %d %v", h2, n2, err)
			}
		})
	}
}

// TestOracle cross-checks addresses against github.com/pires/go-proxyproto.
//
// One vector is skipped where the spec is explicit and the oracle is
// stricter: for LOCAL "the receiver must ... discard the protocol block
// including the family" (the oracle still length-checks it by family).
func TestOracle(t *testing.T) {
	skip := map[string]bool{"v2 local ignores block": true}
	for _, v := range vectors(t) {
		if skip[v.name] {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(append(append([]byte(nil), v.in...), payload...)))
			oh, err := pp.Read(r)
			if err != nil {
				t.Fatalf("oracle: %v", err)
			}
			rest := make([]byte, len(payload)+1)
			if k, _ := r.Read(rest); string(rest[:k]) != payload {
				t.Fatalf("oracle left %q", rest[:k])
			}
			h, _, err := Parse(v.in, v.accept)
			if err != nil {
				t.Fatal(err)
			}
			if byte(h.Version) != oh.Version {
				t.Fatalf("version %d vs oracle %d", h.Version, oh.Version)
			}
			src, dst, ok := oh.TCPAddrs()
			if ok != h.HasAddrs() {
				t.Fatalf("addresses: ours %v, oracle %v (%v)", h.HasAddrs(), ok, oh.TransportProtocol)
			}
			if ok && (src.AddrPort() != h.Src || dst.AddrPort() != h.Dst) {
				t.Fatalf("ours %v %v, oracle %v %v", h.Src, h.Dst, src, dst)
			}
			if raw, _ := oh.TLVs(); h.TLVs != nil {
				if tl, _ := pp.JoinTLVs(raw); !bytes.Equal(tl, h.TLVs) {
					t.Fatalf("TLVs %x vs oracle %x", h.TLVs, tl)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	sig := "0d0a0d0a000d0a515549540a"
	long := "PROXY UNKNOWN " + strings.Repeat("a", 94) // 108 bytes, no LF
	for _, tc := range []struct {
		name   string
		in     []byte
		accept Version
		want   error
	}{
		{"http request", []byte("GET / HTTP/1.1\r\n"), Any, ErrNotProxy},
		{"v1 not accepted", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), V2, ErrNotProxy},
		{"v2 not accepted", unhex(t, haproxyV2), V1, ErrNotProxy},
		{"v1 bad prefix", []byte("PROXZ"), Any, ErrNotProxy},
		{"v1 lowercase", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), Any, ErrNotProxy},
		{"v1 too long", []byte(long), V1, ErrV1TooLong},
		{"v1 10k garbage", []byte("PROXY " + strings.Repeat("x", 10000)), V1, ErrV1TooLong},
		{"v1 LF only", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), V1, ErrV1Syntax},
		{"v1 bare CR early", []byte("PROXY TCP4 1.2.3.4\r 5.6"), V1, ErrV1Syntax},
		{"v1 CR in unknown", []byte("PROXY UNKNOWN a\rb\r\n"), V1, ErrV1Syntax},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), V1, ErrV1Syntax},
		{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), V1, ErrV1Syntax},
		{"v1 five fields", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), V1, ErrV1Syntax},
		{"v1 three fields", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), V1, ErrV1Syntax},
		{"v1 udp4", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), V1, ErrV1Syntax},
		{"v1 unknownx", []byte("PROXY UNKNOWNX\r\n"), V1, ErrV1Syntax},
		{"v1 tab", []byte("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), V1, ErrV1Syntax},
		{"v1 tcp4 with v6", []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), V1, ErrV1Address},
		{"v1 tcp6 with v4", []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), V1, ErrV1Address},
		{"v1 leading zero addr", []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), V1, ErrV1Address},
		{"v1 octet 256", []byte("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), V1, ErrV1Address},
		{"v1 short quad", []byte("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), V1, ErrV1Address},
		{"v1 hostname", []byte("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), V1, ErrV1Address},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), V1, ErrV1Address},
		{"v1 port 65536", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), V1, ErrV1Port},
		{"v1 port leading zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), V1, ErrV1Port},
		{"v1 port sign", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n"), V1, ErrV1Port},
		{"v2 bad sig", unhex(t, "0d0a0d0a000d0a515549540b"), Any, ErrNotProxy},
		{"v2 version 1", unhex(t, sig+"11"), Any, ErrV2Version},
		{"v2 version 3", unhex(t, sig+"31110000"), V2, ErrV2Version},
		{"v2 command 2", unhex(t, sig+"22"), V2, ErrV2Command},
		{"v2 family unknown", unhex(t, sig+"2141"), V2, ErrV2Family},
		{"v2 proxy unspec", unhex(t, sig+"21000000"), V2, ErrV2Family},
		{"v2 dgram", unhex(t, sig+"2112000c"), V2, ErrV2Family},
		{"v2 inet unspec transport", unhex(t, sig+"2110000c"), V2, ErrV2Family},
		{"v2 inet short length", unhex(t, sig+"2111000b"), V2, ErrV2Length},
		{"v2 inet6 short length", unhex(t, sig+"2121000c"), V2, ErrV2Length},
		{"v2 too long", unhex(t, sig+"21111001"), V2, ErrV2TooLong},
		{"v2 local too long", unhex(t, sig+"2000ffff"), V2, ErrV2TooLong},
		{"v2 tlv truncated header", unhex(t, sig+"2111000e 7f000001 7f000001 0001 0002 0400"), V2, ErrV2TLV},
		{"v2 tlv overrun", unhex(t, sig+"2111000f 7f000001 7f000001 0001 0002 040005"), V2, ErrV2TLV},
		{"v2 crc wrong size", unhex(t, sig+"21110010 7f000001 7f000001 0001 0002 030001 00"), V2, ErrV2TLV},
		{"v2 crc mismatch", unhex(t, sig+"21110013 7f000001 7f000001 0001 0002 030004 00000000"), V2, ErrV2Checksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse(tc.in, tc.accept)
			if !errors.Is(err, tc.want) || n != 0 {
				t.Fatalf("Parse = %+v, %d, %v; want %v", h, n, err, tc.want)
			}
		})
	}
}

func TestCRC32C(t *testing.T) {
	b, err := AppendV2(nil, ap("127.0.0.1:1000"), ap("127.0.0.1:2000"), TLV{TypeCRC32C, make([]byte, 4)})
	if err != nil {
		t.Fatal(err)
	}
	c := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(b[len(b)-4:], c)
	h, n, err := Parse(b, V2)
	if err != nil || n != len(b) {
		t.Fatalf("valid CRC rejected: %v", err)
	}
	if v, ok := h.TLV(TypeCRC32C); !ok || binary.BigEndian.Uint32(v) != c {
		t.Fatalf("TLV lookup: %x %v", v, ok)
	}
	b[20] ^= 1 // flip a bit of the source address
	if _, _, err := Parse(b, V2); !errors.Is(err, ErrV2Checksum) {
		t.Fatalf("corrupted header: %v", err)
	}
}

func TestAppend(t *testing.T) {
	for _, tc := range []struct {
		src, dst netip.AddrPort
		v1       string
		fam      Family
	}{
		{ap("192.0.2.1:56324"), ap("198.51.100.2:443"), "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", INET},
		{ap("[::ffff:192.0.2.1]:1"), ap("192.0.2.2:2"), "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n", INET},
		{ap("[2001:db8::1]:1"), ap("192.0.2.2:2"), "PROXY TCP6 2001:db8::1 ::ffff:192.0.2.2 1 2\r\n", INET6},
		{ap("[fe80::1%eth0]:1"), ap("[::1]:2"), "PROXY TCP6 fe80::1 ::1 1 2\r\n", INET6},
		{netip.AddrPort{}, ap("[::1]:2"), "PROXY UNKNOWN\r\n", Unspec},
	} {
		got := string(AppendV1([]byte("x"), tc.src, tc.dst))
		if got != "x"+tc.v1 {
			t.Errorf("AppendV1(%v,%v) = %q, want %q", tc.src, tc.dst, got, tc.v1)
		}
		h, n, err := Parse([]byte(got[1:]), V1)
		if err != nil || n != len(tc.v1) || h.Family != tc.fam {
			t.Errorf("parse back %q: %+v %v", tc.v1, h, err)
		}
		b, err := AppendV2(nil, tc.src, tc.dst, TLV{TypeUniqueID, []byte("id-1")})
		if err != nil {
			t.Fatal(err)
		}
		h2, n2, err := Parse(b, V2)
		wantCmd := Proxy
		if tc.fam == Unspec {
			wantCmd = Local
		}
		if err != nil || n2 != len(b) || h2.Family != tc.fam || h2.Command != wantCmd {
			t.Fatalf("v2 parse back: %+v %v", h2, err)
		}
		if v, ok := h2.TLV(TypeUniqueID); tc.fam != Unspec && (!ok || string(v) != "id-1") {
			t.Errorf("TLV lost: %q", v)
		}
		if tc.fam != Unspec && (h2.Src.Addr().Unmap() != tc.src.Addr().Unmap().WithZone("") || h2.Dst.Port() != tc.dst.Port()) {
			t.Errorf("v2 round trip: %v %v from %v %v", h2.Src, h2.Dst, tc.src, tc.dst)
		}
		// The oracle accepts what we send.
		oh, err := pp.Read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("oracle rejects our v2: %v", err)
		}
		if s, _, ok := oh.TCPAddrs(); ok && s.AddrPort() != h2.Src {
			t.Errorf("oracle src %v, ours %v", s, h2.Src)
		}
	}
	if _, err := AppendV2(nil, ap("1.2.3.4:1"), ap("1.2.3.4:2"), TLV{1, make([]byte, MaxV2Payload)}); !errors.Is(err, ErrTLVTooLarge) {
		t.Fatalf("oversized TLV: %v", err)
	}
	h, n, err := Parse(AppendV2Local(nil), V2)
	if err != nil || n != 16 || h.Command != Local || h.HasAddrs() {
		t.Fatalf("local: %+v %d %v", h, n, err)
	}
}

// TestRealSocket sends a header plus payload over loopback in small writes
// and parses it the way a loop would: append what arrives, retry on ErrNeedMore.
func TestRealSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hdr, _ := AppendV2(nil, ap("192.0.2.7:40000"), ap("127.0.0.1:8080"))
	msg := append(hdr, payload...)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; i < len(msg); i += 5 {
			if _, err := c.Write(msg[i:min(i+5, len(msg))]); err != nil {
				return
			}
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 0, MaxLen)
	var h Header
	var n int
	for {
		k, err := c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			t.Fatalf("read: %v (have %d bytes)", err, len(buf))
		}
		buf = buf[:len(buf)+k]
		h, n, err = Parse(buf, Any)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNeedMore) {
			t.Fatal(err)
		}
	}
	rest := append([]byte(nil), buf[n:]...)
	for len(rest) < len(payload) {
		tmp := make([]byte, 64)
		k, err := c.Read(tmp)
		if err != nil {
			t.Fatal(err)
		}
		rest = append(rest, tmp[:k]...)
	}
	if h.Src != ap("192.0.2.7:40000") || string(rest) != payload {
		t.Fatalf("src %v payload %q", h.Src, rest)
	}
}

func BenchmarkParseV1(b *testing.B) {
	in := []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(in, Any); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseV2(b *testing.B) {
	in := unhex(b, haproxyV2)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(in, Any); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendV2(b *testing.B) {
	buf := make([]byte, 0, 64)
	s, d := ap("[2001:db8::1]:1"), ap("[2001:db8::2]:2")
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendV2(buf[:0], s, d)
	}
}
