package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

// checkParse asserts the properties every input must satisfy and returns the result.
func checkParse(t *testing.T, data []byte, accept Version, allPrefixes bool) (Header, int, error) {
	h, n, err := Parse(data, accept)
	if n < 0 || n > len(data) {
		t.Fatalf("consumed %d of %d", n, len(data))
	}
	if err != nil {
		if n != 0 {
			t.Fatalf("error %v with n=%d", err, n)
		}
		return h, n, err
	}
	if n == 0 {
		t.Fatal("success with nothing consumed")
	}
	// Incremental consistency: the header alone parses the same, and no
	// proper prefix of it is anything but ErrNeedMore.
	h2, n2, err2 := Parse(data[:n], accept)
	if err2 != nil || n2 != n || !sameHeader(h, h2) {
		t.Fatalf("header alone: %+v %d %v vs %+v %d", h2, n2, err2, h, n)
	}
	prefixes := []int{0, 1, n / 2, n - 1}
	if allPrefixes {
		prefixes = prefixes[:0]
		for k := range n {
			prefixes = append(prefixes, k)
		}
	}
	for _, k := range prefixes {
		if _, _, err := Parse(data[:k], accept); !errors.Is(err, ErrNeedMore) {
			t.Fatalf("prefix %d of %d: %v", k, n, err)
		}
	}
	return h, n, nil
}

func FuzzProxyV1(f *testing.F) {
	for _, v := range vectors(f) {
		if v.want.Version == V1 {
			f.Add(append(append([]byte(nil), v.in...), payload...))
		}
	}
	f.Add([]byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"))
	f.Add([]byte("PROXY TCP6 ::ffff:1.2.3.4 :: 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\nGET"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := checkParse(t, data, V1, true)
		if err != nil {
			return
		}
		if n > MaxV1Len || h.Version != V1 || h.Command != Proxy {
			t.Fatalf("bad v1 result %+v n=%d", h, n)
		}
		if !h.HasAddrs() {
			return
		}
		// Round trip through our builder.
		b := AppendV1(nil, h.Src, h.Dst)
		h2, n2, err := Parse(b, V1)
		if err != nil || n2 != len(b) || h2.Src.Addr().Unmap() != h.Src.Addr().Unmap() ||
			h2.Dst.Addr().Unmap() != h.Dst.Addr().Unmap() || h2.Src.Port() != h.Src.Port() || h2.Dst.Port() != h.Dst.Port() {
			t.Fatalf("round trip %q -> %+v %v", b, h2, err)
		}
		// We are stricter than the oracle, never looser.
		oh, err := pp.Read(bufio.NewReader(bytes.NewReader(data[:n])))
		if err != nil {
			t.Fatalf("we accept %q, oracle says %v", data[:n], err)
		}
		if s, d, ok := oh.TCPAddrs(); !ok || s.AddrPort() != h.Src || d.AddrPort() != h.Dst {
			t.Fatalf("oracle %v %v, ours %v %v", s, d, h.Src, h.Dst)
		}
	})
}

func FuzzProxyV2(f *testing.F) {
	for _, v := range vectors(f) {
		if v.want.Version == V2 {
			f.Add(append(append([]byte(nil), v.in...), payload...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, n, err := checkParse(t, data, V2, false)
		if err == nil {
			if n > MaxV2Len || h.Version != V2 {
				t.Fatalf("bad v2 result %+v n=%d", h, n)
			}
			if h.HasAddrs() {
				var tl []TLV
				for t0 := h.TLVs; len(t0) >= 3; {
					l := int(binary.BigEndian.Uint16(t0[1:3]))
					if t0[0] != TypeCRC32C { // its value depends on the rest of the header
						tl = append(tl, TLV{t0[0], t0[3 : 3+l]})
					}
					t0 = t0[3+l:]
				}
				b, err := AppendV2(nil, h.Src, h.Dst, tl...)
				if err != nil {
					t.Fatalf("rebuild: %v", err)
				}
				h2, _, err := Parse(b, V2)
				if err != nil || h2.Src.Addr().Unmap() != h.Src.Addr().Unmap() || h2.Dst.Port() != h.Dst.Port() {
					t.Fatalf("round trip: %+v %v", h2, err)
				}
			}
		}
		// Builder round trip on addresses taken from the fuzz input.
		if len(data) >= 36 {
			src := netip.AddrPortFrom(netip.AddrFrom16([16]byte(data[0:16])), binary.BigEndian.Uint16(data[32:34]))
			dst := netip.AddrPortFrom(netip.AddrFrom16([16]byte(data[16:32])), binary.BigEndian.Uint16(data[34:36]))
			b, err := AppendV2(nil, src, dst, TLV{TypeNoop, data[36:min(len(data), 100)]})
			if err != nil {
				t.Fatal(err)
			}
			h, n, err := Parse(b, V2)
			if err != nil || n != len(b) || h.Src.Addr().Unmap() != src.Addr().Unmap() ||
				h.Dst.Addr().Unmap() != dst.Addr().Unmap() || h.Src.Port() != src.Port() || h.Dst.Port() != dst.Port() {
				t.Fatalf("AppendV2 round trip %v %v -> %+v %v", src, dst, h, err)
			}
			b1 := AppendV1(nil, src, dst)
			h1, _, err := Parse(b1, V1)
			if err != nil || h1.Src.Addr().Unmap() != src.Addr().Unmap() || h1.Dst.Port() != dst.Port() {
				t.Fatalf("AppendV1 round trip %q -> %+v %v", b1, h1, err)
			}
		}
	})
}
