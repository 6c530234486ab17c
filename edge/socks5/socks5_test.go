package socks5

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/relayd/relayd/edge/auth"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func creds(t testing.TB) auth.Verifier {
	c, err := auth.NewCredentials(map[string]string{"user": "pass"})
	if err != nil {
		t.Fatal(err)
	}
	return c.Verify
}

// Byte sequences as curl 7.88 sends them (captured by TestCurl's server).
const (
	curlGreetNoAuth = "050200 01"   // methods: no-auth, GSSAPI
	curlGreetAuth   = "05030001 02" // methods: no-auth, GSSAPI, user/pass
	curlAuth        = "01 04 75736572 04 70617373"
	// CONNECT example.test:8080 (curl --socks5-hostname)
	curlConnectName = "05010003 0c 6578616d706c652e74657374 1f90"
	connectV4       = "05010001 7f000001 0050"
	connectV6       = "05010004 00000000000000000000000000000001 01bb"
)

type vec struct {
	name    string
	verify  bool
	in      string // hex
	replies string // hex of everything Feed appends
	want    Request
}

func vecs() []vec {
	return []vec{
		{"no auth, domain", false, curlGreetNoAuth + curlConnectName, "0500",
			Request{Host: "example.test", Port: 8080}},
		{"user/pass, domain", true, curlGreetAuth + curlAuth + curlConnectName, "0502 0100",
			Request{Host: "example.test", Port: 8080}},
		{"ipv4", false, "050100" + connectV4, "0500",
			Request{Addr: netip.MustParseAddrPort("127.0.0.1:80"), Port: 80}},
		{"ipv6", false, "050100" + connectV6, "0500",
			Request{Addr: netip.MustParseAddrPort("[::1]:443"), Port: 443}},
		{"ip literal as domain", false, "050100 05010003 09 3132372e302e302e31 0050", "0500",
			Request{Addr: netip.MustParseAddrPort("127.0.0.1:80"), Port: 80}},
	}
}

func TestFeedVectors(t *testing.T) {
	const payload = "GET / HTTP/1.1\r\n\r\n"
	for _, v := range vecs() {
		t.Run(v.name, func(t *testing.T) {
			cfg := Config{}
			if v.verify {
				cfg.Verify = creds(t)
			}
			msg := unhex(t, v.in)
			wantOut := unhex(t, v.replies)

			// Pipelined: everything at once, payload included.
			s := New(cfg)
			in := append(append([]byte(nil), msg...), payload...)
			n, out, err := s.Feed(in, nil)
			if err != nil || n != len(msg) || string(in[n:]) != payload || !bytes.Equal(out, wantOut) {
				t.Fatalf("pipelined: n=%d err=%v out=%x", n, err, out)
			}
			if s.Request() != v.want {
				t.Fatalf("request %+v, want %+v", s.Request(), v.want)
			}

			// One byte at a time, as a loop with a tiny socket buffer would see it.
			s = New(cfg)
			var buf, outAll []byte
			done := false
			for i := range msg {
				buf = append(buf, msg[i])
				n, o, err := s.Feed(buf, nil)
				outAll = append(outAll, o...)
				buf = buf[n:]
				if err == nil {
					done = true
					if i != len(msg)-1 {
						t.Fatalf("done early at byte %d", i)
					}
					break
				}
				if !errors.Is(err, ErrNeedMore) {
					t.Fatalf("byte %d: %v", i, err)
				}
			}
			if !done || len(buf) != 0 || !bytes.Equal(outAll, wantOut) || s.Request() != v.want {
				t.Fatalf("bytewise: done=%v left=%d out=%x req=%+v", done, len(buf), outAll, s.Request())
			}
			// Done is sticky and consumes nothing more.
			if n, o, err := s.Feed([]byte(payload), nil); n != 0 || len(o) != 0 || err != nil || !s.Done() {
				t.Fatalf("after done: %d %x %v", n, o, err)
			}
		})
	}
}

func TestFeedErrors(t *testing.T) {
	long := "05010003ff" + strings.Repeat("61", 10000) // 10,000-byte "domain": the length byte caps it at 255
	for _, tc := range []struct {
		name    string
		verify  bool
		in      string
		n       int
		replies string
		want    error
	}{
		{"socks4 greeting", false, "04010050 7f000001 00", 0, "", ErrBadVersion},
		{"http", false, hex.EncodeToString([]byte("GET / HTTP/1.1\r\n")), 0, "", ErrBadVersion},
		{"no methods", false, "0500", 2, "05ff", ErrNoAcceptableMethod},
		{"auth required, client offers none", true, "050100", 3, "05ff", ErrNoAcceptableMethod},
		{"no-auth server, client offers only user/pass", false, "050102", 3, "05ff", ErrNoAcceptableMethod},
		{"wrong password", true, "050102 01 04 75736572 04 78787878", 3 + 11, "0502 0101", ErrAuthFailed},
		{"unknown user", true, "050102 01 03 626f62 04 70617373", 3 + 10, "0502 0101", ErrAuthFailed},
		{"empty user", true, "050102 01 00 04 70617373", 3 + 7, "0502 0101", ErrAuthFailed},
		{"auth version", true, "050102 05", 3, "0502", ErrBadAuthVersion},
		{"request version", false, "050100 04010001", 3, "0500", ErrBadVersion},
		{"bind", false, "050100 05020001 7f000001 0050", 13, "0500 05070001 00000000 0000", ErrCommandNotSupported},
		{"udp associate", false, "050100 05030001 00000000 0000", 13, "0500 05070001 00000000 0000", ErrCommandNotSupported},
		{"unknown command", false, "050100 05090001 00000000 0000", 13, "0500 05070001 00000000 0000", ErrCommandNotSupported},
		{"bad atyp", false, "050100 05010002", 7, "0500 05080001 00000000 0000", ErrAddrTypeNotSupported},
		{"reserved nonzero", false, "050100 05010101 7f000001 0050", 13, "0500 05010001 00000000 0000", ErrBadRequest},
		{"empty domain", false, "050100 05010003 00 0050", 10, "0500 05040001 00000000 0000", ErrBadHost},
		{"CRLF in domain", false, "050100 05010003 0b 6578616d0d0a706c652e74 0050", 21, "0500 05040001 00000000 0000", ErrBadHost},
		{"NUL in domain", false, "050100 05010003 05 6100622e63 0050", 15, "0500 05040001 00000000 0000", ErrBadHost},
		{"numeric name", false, "050100 05010003 05 3132372e31 0050", 15, "0500 05040001 00000000 0000", ErrBadHost},
		{"10000-byte domain", false, "050100" + long, 3 + 4 + 1 + 255 + 2, "0500 05040001 00000000 0000", ErrBadHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}
			if tc.verify {
				cfg.Verify = creds(t)
			}
			s := New(cfg)
			n, out, err := s.Feed(unhex(t, tc.in), nil)
			if !errors.Is(err, tc.want) || n != tc.n || !bytes.Equal(out, unhex(t, tc.replies)) {
				t.Fatalf("Feed = n %d, out %x, %v; want n %d, out %s, %v", n, out, err, tc.n, tc.replies, tc.want)
			}
			// Terminal errors are sticky.
			if n2, out2, err2 := s.Feed(unhex(t, tc.in), nil); n2 != 0 || len(out2) != 0 || !errors.Is(err2, tc.want) {
				t.Fatalf("second Feed: %d %x %v", n2, out2, err2)
			}
		})
	}
}

func TestTruncatedNeedsMore(t *testing.T) {
	msg := unhex(t, curlGreetAuth+curlAuth+curlConnectName)
	for k := range len(msg) {
		s := New(Config{Verify: creds(t)})
		if _, _, err := s.Feed(msg[:k], nil); !errors.Is(err, ErrNeedMore) {
			t.Fatalf("prefix %d: %v", k, err)
		}
	}
}

func TestAppendReply(t *testing.T) {
	for _, tc := range []struct {
		rep   Reply
		bound netip.AddrPort
		want  string
	}{
		{Succeeded, netip.MustParseAddrPort("127.0.0.1:40000"), "05000001 7f000001 9c40"},
		{Succeeded, netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"), "05000001 7f000001 0001"},
		{Succeeded, netip.MustParseAddrPort("[::1]:2"), "05000004 00000000000000000000000000000001 0002"},
		{NotAllowed, netip.AddrPort{}, "05020001 00000000 0000"},
		{NetUnreachable, netip.AddrPort{}, "05030001 00000000 0000"},
		{HostUnreachable, netip.AddrPort{}, "05040001 00000000 0000"},
		{ConnRefused, netip.AddrPort{}, "05050001 00000000 0000"},
		{TTLExpired, netip.AddrPort{}, "05060001 00000000 0000"},
		{CmdNotSupported, netip.AddrPort{}, "05070001 00000000 0000"},
		{AddrNotSupported, netip.AddrPort{}, "05080001 00000000 0000"},
	} {
		if got := AppendReply(nil, tc.rep, tc.bound); !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("AppendReply(%d, %v) = %x, want %s", tc.rep, tc.bound, got, tc.want)
		}
	}
}

func TestDialReply(t *testing.T) {
	opErr := func(e error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", e)}
	}
	for _, tc := range []struct {
		err  error
		want Reply
	}{
		{nil, Succeeded},
		{opErr(syscall.ECONNREFUSED), ConnRefused},
		{opErr(syscall.ENETUNREACH), NetUnreachable},
		{opErr(syscall.EHOSTUNREACH), HostUnreachable},
		{opErr(syscall.ETIMEDOUT), TTLExpired},
		{fmt.Errorf("dial: %w", os.ErrDeadlineExceeded), TTLExpired},
		{&net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}, HostUnreachable},
		{&net.DNSError{Err: "timeout", Name: "x.test", IsTimeout: true}, TTLExpired},
		{errors.New("other"), GeneralFailure},
	} {
		if got := DialReply(tc.err); got != tc.want {
			t.Errorf("DialReply(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	// A real refused connect on loopback: listen, close, dial the freed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := net.Dial("tcp", addr); DialReply(err) != ConnRefused {
		t.Fatalf("real refused dial: %v -> %d", err, DialReply(err))
	}
}

func BenchmarkFeed(b *testing.B) {
	msg := unhex(b, curlGreetAuth+curlAuth+connectV4)
	v := creds(b)
	out := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		s := New(Config{Verify: v})
		if _, _, err := s.Feed(msg, out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// User is the name the client gave, accepted or refused, for the log.
func TestUser(t *testing.T) {
	for _, c := range []struct {
		auth    string
		wantErr error
	}{
		{curlAuth, nil},
		{"01 04 75736572 05 77726f6e67", ErrAuthFailed}, // user / wrong
	} {
		s := New(Config{Verify: creds(t)})
		_, _, err := s.Feed(unhex(t, curlGreetAuth+c.auth+curlConnectName), nil)
		if !errors.Is(err, c.wantErr) || s.User() != "user" {
			t.Fatalf("auth %s: err %v user %q", c.auth, err, s.User())
		}
	}
	s := New(Config{})
	if _, _, err := s.Feed(unhex(t, curlGreetNoAuth+curlConnectName), nil); err != nil || s.User() != "" {
		t.Fatalf("no auth: err %v user %q", err, s.User())
	}
}
