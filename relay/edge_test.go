//go:build linux

package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/edge/auth"
	"github.com/relayd/relayd/edge/policy"
	"github.com/relayd/relayd/edge/proxyproto"
	"github.com/relayd/relayd/edge/resolve"
	"github.com/relayd/relayd/internal/testnet"
	"github.com/relayd/relayd/relay"
)

// edgeRelay starts a relay whose listener runs in mode with a policy that
// allows exactly the echo upstream's port on 127.0.0.1, and a resolver whose
// names are fixed: echo.test → 127.0.0.1, loop.test → 127.0.0.1 (allowed
// only on the echo port), meta.test → 169.254.169.254, none.test → error.
func edgeRelay(t *testing.T, mode string, upPort uint16, mod func(*relay.ListenerConfig)) *fixture {
	t.Helper()
	return edgeRelayRC(t, mode, upPort, nil, mod)
}

// edgeRelayRC is edgeRelay with the relay's Config adjusted by rmod too.
func edgeRelayRC(t *testing.T, mode string, upPort uint16, rmod func(*relay.Config), mod func(*relay.ListenerConfig)) *fixture {
	t.Helper()
	pol, err := policy.New(policy.Config{Allow: []policy.Entry{{CIDR: "127.0.0.1/32", Ports: strconv.Itoa(int(upPort))}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := resolve.New(resolve.Config{Workers: 2, Lookup: func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "echo.test", "loop.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "meta.test":
			return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close) // after the relay's cleanup (LIFO)
	return startRelay(t, nil, func(rc *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) {
		if rmod != nil {
			rmod(rc)
		}
		lc.Mode, lc.Policy, lc.Resolver = mode, pol, res
		lc.HandshakeTimeout = 2 * time.Second
		if mod != nil {
			mod(lc)
		}
	})
}

func port(t *testing.T, addr string) uint16 {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port()
}

func socksReq(host string, ap netip.AddrPort, p uint16) []byte {
	b := []byte{5, 1, 0}
	switch {
	case host != "":
		b = append(b, 5, 1, 0, 3, byte(len(host)))
		b = append(b, host...)
	case ap.Addr().Is4():
		a := ap.Addr().As4()
		b = append(b, 5, 1, 0, 1)
		b = append(b, a[:]...)
	default:
		a := ap.Addr().As16()
		b = append(b, 5, 1, 0, 4)
		b = append(b, a[:]...)
	}
	if host == "" {
		p = ap.Port()
	}
	return binary.BigEndian.AppendUint16(b, p)
}

// socksReply reads the method selection and the reply; it returns REP.
func socksReply(t *testing.T, c net.Conn) byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [12]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 || b[1] != 0 {
		t.Fatalf("method selection %x: %v", b[:2], err)
	}
	if _, err := io.ReadFull(c, b[:10]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	if b[0] != 5 || b[3] != 1 {
		t.Fatalf("reply %x", b[:10])
	}
	return b[1]
}

// waitStat polls the server's counters until ok holds (bounded).
// The bound is generous: it only decides how long a failing test takes, and
// a loaded 2-core machine under -race can need seconds for a state that
// takes milliseconds here (100 sessions pushing until each is paused).
func waitStat(t *testing.T, srv *relay.Server, what string, ok func(relay.Stats) bool) relay.Stats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := srv.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, st.Closed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closedIs(reason relay.Reason, n uint64) func(relay.Stats) bool {
	return func(st relay.Stats) bool { return st.Closed[reason.String()] == n }
}

// expectClosed reads until EOF or an error (a reset) and returns what came.
func expectClosed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed (got %q)", b)
	}
	return b
}

// A pipelined client (greeting, request and 1 MiB of payload in one go)
// loses no byte, by IP and by name.
func TestSOCKS5Relay(t *testing.T) {
	up := newServer(t, echo)
	f := edgeRelay(t, relay.ModeSOCKS5, port(t, up.Addr()), nil)
	for _, tc := range []struct {
		name string
		req  []byte
	}{
		{"ip", socksReq("", netip.MustParseAddrPort(up.Addr()), 0)},
		{"name", socksReq("echo.test", netip.AddrPort{}, port(t, up.Addr()))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, f.addr)
			const n = 1 << 20
			go func() {
				_, _ = c.Write(tc.req)
				_, _ = io.Copy(c, randReader(7, n))
				_ = c.CloseWrite()
			}()
			if rep := socksReply(t, c); rep != 0 {
				t.Fatalf("REP %d", rep)
			}
			got, m, err := sum(c)
			if err != nil || m != n || got != mustSum(7, n) {
				t.Fatalf("echo: %d bytes, %v, sum equal %v", m, err, got == mustSum(7, n))
			}
		})
	}
	waitStat(t, f.srv, "eof", closedIs(relay.ReasonEOF, 2))
}

// Acceptance 3: destinations outside the policy are refused before any
// connect, with REP 2 (or 4 for a name that does not resolve), counted by
// rule.
func TestSOCKS5Policy(t *testing.T) {
	up := newServer(t, echo)
	upPort := port(t, up.Addr())
	f := edgeRelay(t, relay.ModeSOCKS5, upPort, nil)
	self := netip.MustParseAddrPort(f.addr)
	tests := []struct {
		name string
		host string
		ap   string
		rep  byte
		rule string
	}{
		{"loopback other port", "", "127.0.0.1:9", 2, "loopback"},
		{"private", "", "10.0.0.1:80", 2, "private"},
		{"metadata", "", "169.254.169.254:80", 2, "metadata"},
		{"v6 loopback", "", "[::1]:" + strconv.Itoa(int(upPort)), 2, "loopback"},
		{"mapped loopback", "", "[::ffff:127.0.0.1]:9", 2, "loopback"},
		{"self", "", self.String(), 2, "loopback"},
		{"name to metadata", "meta.test", "", 2, "metadata"},
		{"name to loopback other port", "loop.test", "", 2, "loopback"},
		{"unknown name", "none.test", "", 4, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, f.addr)
			var req []byte
			if tc.host != "" {
				req = socksReq(tc.host, netip.AddrPort{}, 9)
			} else {
				req = socksReq("", netip.MustParseAddrPort(tc.ap), 0)
			}
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			if rep := socksReply(t, c); rep != tc.rep {
				t.Fatalf("REP %d, want %d", rep, tc.rep)
			}
			expectClosed(t, c)
		})
	}
	st := waitStat(t, f.srv, "denials", func(st relay.Stats) bool {
		return st.Closed[relay.ReasonPolicyDenied.String()] == 8 && st.Closed[relay.ReasonResolveFailed.String()] == 1
	})
	if st.Closed["refused"]+st.Closed["connect_failed"]+st.Closed["connect_timeout"] != 0 {
		t.Errorf("a refused destination was connected to: %v", st.Closed)
	}
	if got := f.pool.Stats(); got.Submitted != 0 {
		t.Errorf("connector saw %d requests, want 0", got.Submitted)
	}
	want := map[string]uint64{}
	for _, tc := range tests {
		if tc.rule != "" {
			want[tc.rule]++
		}
	}
	if got := f.srv.EdgeStats()["test"].PolicyDenied; !maps.Equal(got, want) {
		t.Errorf("PolicyDenied = %v, want %v", got, want)
	}
}

// Without an allow-list the built-in rules name themselves, and the
// listener's own (kernel-chosen) port is refused even where loopback is open.
func TestPolicyRulesByName(t *testing.T) {
	pol, err := policy.New(policy.Config{Allow: []policy.Entry{{CIDR: "127.0.0.1/32"}}})
	if err != nil {
		t.Fatal(err)
	}
	f := startRelay(t, nil, func(_ *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) {
		lc.Mode, lc.Policy = relay.ModeHTTPConnect, pol
	})
	for _, target := range []string{f.addr, "10.0.0.1:80", "169.254.169.254:80", "[::1]:80", "[::ffff:127.0.0.1]:" + strconv.Itoa(int(port(t, f.addr)))} {
		c := dial(t, f.addr)
		if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if got := string(expectClosed(t, c)); !strings.HasPrefix(got, "HTTP/1.1 403 ") {
			t.Fatalf("%s: %q", target, got)
		}
	}
	waitStat(t, f.srv, "denials", closedIs(relay.ReasonPolicyDenied, 5))
	// The mapped spelling of the listener's own address is the listener.
	want := map[string]uint64{"self": 2, "private": 1, "metadata": 1, "loopback": 1}
	if got := f.srv.EdgeStats()["test"].PolicyDenied; !maps.Equal(got, want) {
		t.Errorf("PolicyDenied = %v, want %v", got, want)
	}
}

func httpConnect(t *testing.T, c net.Conn, target, extra string) string {
	t.Helper()
	if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n"+extra+"\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("status line: %v", err)
	}
	for {
		h, err := br.ReadString('\n')
		if err != nil || h == "\r\n" {
			break
		}
	}
	if br.Buffered() > 0 {
		t.Fatalf("bytes after the reply head: %d", br.Buffered())
	}
	return strings.TrimSpace(line)
}

// HTTP CONNECT with Basic auth: right credentials tunnel (payload sent with
// the request is forwarded), wrong and missing ones get 407, counted.
func TestHTTPConnectAuth(t *testing.T) {
	up := newServer(t, echo)
	creds, err := auth.NewCredentials(map[string]string{"alice": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	f := edgeRelay(t, relay.ModeHTTPConnect, port(t, up.Addr()), func(lc *relay.ListenerConfig) { lc.Verify = creds.Verify })
	good := "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n" // alice:s3cret
	c := dial(t, f.addr)
	if _, err := io.WriteString(c, "CONNECT "+up.Addr()+" HTTP/1.1\r\n"+good+"\r\nearly"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	want := "HTTP/1.1 200 Connection established\r\n\r\nearly"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q, %v", got, err)
	}
	c.Close()
	for _, extra := range []string{"Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n", ""} {
		c := dial(t, f.addr)
		if st := httpConnect(t, c, up.Addr(), extra); !strings.HasPrefix(st, "HTTP/1.1 407 ") {
			t.Fatalf("status %q", st)
		}
		expectClosed(t, c)
	}
	waitStat(t, f.srv, "auth", closedIs(relay.ReasonAuthFailed, 2))
}

// Acceptance 4: garbage is closed with the right reply, counted, and a
// concurrent forward session on the same loops is unaffected.
func TestEdgeGarbage(t *testing.T) {
	up := newServer(t, echo)
	upPort := port(t, up.Addr())
	f := edgeRelay(t, relay.ModeHTTPConnect, upPort, func(lc *relay.ListenerConfig) { lc.HandshakeTimeout = 500 * time.Millisecond })
	socksAddr, err := f.srv.AddListener(relay.ListenerConfig{Name: "socks", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Mode: relay.ModeSOCKS5, HandshakeTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fwdAddr, err := f.srv.AddListener(relay.ListenerConfig{Name: "fwd", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: []netip.AddrPort{netip.MustParseAddrPort(up.Addr())}})
	if err != nil {
		t.Fatal(err)
	}

	// The bystander: 8 MiB through the forward listener while garbage flows.
	const n = 8 << 20
	bystander := dial(t, fwdAddr.String())
	var wg sync.WaitGroup
	var bsum [32]byte
	var bn int64
	var berr error
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(bystander, randReader(3, n)); _ = bystander.CloseWrite() }()
	go func() { defer wg.Done(); bsum, bn, berr = sum(bystander) }()

	httpCases := []struct {
		name, send, status string
	}{
		{"10000-byte domain", "CONNECT " + strings.Repeat("a", 10000) + ".test:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 431 "},
		{"CRLF in name", "CONNECT evil.test\r\nX: y:443 HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "},
		{"bare LF", "CONNECT echo.test:80 HTTP/1.1\n\n", "HTTP/1.1 400 "},
		{"bad version", "CONNECT echo.test:80 HTTP/2.0\r\n\r\n", "HTTP/1.1 505 "},
		{"GET", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
		{"oversized head", "CONNECT echo.test:80 HTTP/1.1\r\nX: " + strings.Repeat("b", 9000) + "\r\n\r\n", "HTTP/1.1 431 "},
	}
	for _, tc := range httpCases {
		c := dial(t, f.addr)
		if _, err := io.WriteString(c, tc.send); err != nil {
			t.Fatal(err)
		}
		if got := string(expectClosed(t, c)); !strings.HasPrefix(got, tc.status) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.status)
		}
	}
	socksCases := []struct {
		name string
		send []byte
		want []byte
	}{
		{"bad version", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil},
		{"no acceptable method", []byte{5, 1, 2}, []byte{5, 0xff}},
		{"bind", []byte{5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80}, []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"CRLF in name", append([]byte{5, 1, 0, 5, 1, 0, 3, 8}, "a\r\nb.com\x00\x50"...), []byte{5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0}},
	}
	for _, tc := range socksCases {
		c := dial(t, socksAddr.String())
		if _, err := c.Write(tc.send); err != nil {
			t.Fatal(err)
		}
		if got := expectClosed(t, c); !bytes.Equal(got, tc.want) {
			t.Errorf("socks %s: got %x, want %x", tc.name, got, tc.want)
		}
	}
	// Truncated: half a greeting, then EOF; and half a request head.
	for _, tc := range []struct{ addr, send string }{{socksAddr.String(), "\x05\x02"}, {f.addr, "CONNECT echo.te"}} {
		c := dial(t, tc.addr)
		_, _ = io.WriteString(c, tc.send)
		_ = c.CloseWrite()
		if got := expectClosed(t, c); len(got) != 0 {
			t.Errorf("truncated %q: got %q", tc.send, got)
		}
	}
	// Stalled mid-handshake: closed by the handshake timeout.
	var stalled []net.Conn
	for _, tc := range []struct{ addr, send string }{{socksAddr.String(), "\x05\x01\x00\x05\x01"}, {f.addr, "CONNECT echo.test:80 HTTP/1.1\r\n"}} {
		c := dial(t, tc.addr)
		_, _ = io.WriteString(c, tc.send)
		stalled = append(stalled, c)
	}
	t0 := time.Now()
	for i, c := range stalled {
		got := expectClosed(t, c)
		if i == 1 && !bytes.HasPrefix(got, []byte("HTTP/1.1 408 ")) {
			t.Errorf("stalled CONNECT client got %q, want a 408", got)
		}
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stalled clients closed after %v", d)
	}
	wg.Wait()
	if berr != nil || bn != n || bsum != mustSum(3, n) {
		t.Fatalf("bystander: %d bytes, %v, sum ok %v", bn, berr, bsum == mustSum(3, n))
	}
	st := waitStat(t, f.srv, "garbage", func(st relay.Stats) bool {
		return st.Closed["handshake_timeout"] == 2 && st.Closed["handshake_error"] == 6+4+2 && st.Closed["eof"] == 1
	})
	if st.Active != 0 {
		t.Errorf("active %d", st.Active)
	}
}

// PROXY protocol from a trusted peer: the header's source is the client for
// the ACL and the limiter; bytes after the header are forwarded. An
// untrusted peer's header is just payload.
func TestProxyProtocolAccept(t *testing.T) {
	up := newServer(t, echo)
	acl, err := policy.NewSourceACL(nil, []string{"127.0.0.3/32", "2001:db8::3/128"})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := policy.NewSourceLimiter(policy.LimiterConfig{MaxConcurrent: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := startRelay(t, []string{up.Addr()}, func(_ *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) {
		lc.ProxyAccept, lc.Trusted = proxyproto.Any, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		lc.ACL, lc.Limiter = acl, lim
		lc.HandshakeTimeout = 500 * time.Millisecond
	})
	dst := netip.MustParseAddrPort(f.addr)
	v2, _ := proxyproto.AppendV2(nil, netip.MustParseAddrPort("198.51.100.7:5000"), dst)
	ok := [][]byte{
		proxyproto.AppendV1(nil, netip.MustParseAddrPort("192.0.2.1:4000"), dst),
		v2,
	}
	for i, hdr := range ok {
		c := dial(t, f.addr)
		msg := "hello " + strconv.Itoa(i)
		if _, err := c.Write(append(hdr, msg...)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("header %d: %q %v", i, got, err)
		}
		// The limiter holds one session per source: a second one from the
		// same claimed source is refused while the first lives.
		c2 := dial(t, f.addr)
		_, _ = c2.Write(hdr)
		expectClosed(t, c2)
		c.Close()
	}
	denied := [][]byte{
		proxyproto.AppendV1(nil, netip.MustParseAddrPort("127.0.0.3:4000"), dst),
		func() []byte {
			b, _ := proxyproto.AppendV2(nil, netip.MustParseAddrPort("[2001:db8::3]:1"), netip.MustParseAddrPort("[2001:db8::1]:2"))
			return b
		}(),
	}
	for _, hdr := range denied {
		c := dial(t, f.addr)
		_, _ = c.Write(hdr)
		expectClosed(t, c)
	}
	bad := []string{
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",       // LF only
		"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",    // leading zero
		"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",     // bad protocol
		"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c", // v2 signature, version 3
		"GET / HTTP/1.1\r\n\r\n",                 // no header at all
		"PROXY TCP4 " + strings.Repeat("1", 120), // longer than 107 without CRLF
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", // v2 length 65535 > 4096
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04", // v2 length shorter than the IPv4 block
	}
	for _, b := range bad {
		c := dial(t, f.addr)
		_, _ = io.WriteString(c, b)
		if got := expectClosed(t, c); len(got) != 0 {
			t.Errorf("%q: got %q", b, got)
		}
	}
	c := dial(t, f.addr) // truncated and stalled
	_, _ = io.WriteString(c, "PROXY TCP4 1.2.3")
	expectClosed(t, c)

	st := waitStat(t, f.srv, "proxy", func(st relay.Stats) bool {
		return st.Closed["rejected_acl"] == 2 && st.Closed["rejected_source_limit"] == 2 &&
			st.Closed["handshake_error"] == uint64(len(bad)) && st.Closed["handshake_timeout"] == 1 && st.Closed["eof"] == 2
	})
	if st.Active != 0 {
		t.Errorf("active %d", st.Active)
	}
	es := f.srv.EdgeStats()["test"].SourceRejected
	if es["acl-deny"] != 2 || es["source-concurrency"] != 2 {
		t.Errorf("SourceRejected %v", es)
	}
}

// ProxySend: the upstream gets a strict v1/v2 header naming the client,
// then the client's bytes.
func TestProxyProtocolSend(t *testing.T) {
	for _, v := range []proxyproto.Version{proxyproto.V1, proxyproto.V2} {
		got := make(chan proxyproto.Header, 1)
		up := newServer(t, func(c *net.TCPConn) {
			buf := make([]byte, 0, 512)
			for {
				tmp := make([]byte, 256)
				n, err := c.Read(tmp)
				buf = append(buf, tmp[:n]...)
				h, hn, perr := proxyproto.Parse(buf, v)
				if perr == nil {
					got <- h
					_, _ = c.Write(buf[hn:])
					echo(c)
					return
				}
				if !errors.Is(perr, proxyproto.ErrNeedMore) || err != nil {
					close(got)
					return
				}
			}
		})
		f := startRelay(t, []string{up.Addr()}, func(_ *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) { lc.ProxySend = v })
		c := dial(t, f.addr)
		if err := testnet.RoundTrip(c, "payload"); err != nil {
			t.Fatal(err)
		}
		h, ok := <-got
		if !ok {
			t.Fatalf("v%d: upstream could not parse the header", v)
		}
		if h.Src != netip.MustParseAddrPort(c.LocalAddr().String()) || h.Dst != netip.MustParseAddrPort(f.addr) {
			t.Errorf("v%d: header %v -> %v, want %v -> %v", v, h.Src, h.Dst, c.LocalAddr(), f.addr)
		}
	}
}

// Per-source rate: a burst of 2 new sessions per source, and a failed login
// costs a token too, so password guessing is throttled with connecting.
func TestSourceRateAndAuthPenalty(t *testing.T) {
	up := newServer(t, echo)
	creds, err := auth.NewCredentials(map[string]string{"u": "p"})
	if err != nil {
		t.Fatal(err)
	}
	// 0.01/s: no token comes back during the test, whatever the machine's load.
	lim, err := policy.NewSourceLimiter(policy.LimiterConfig{Rate: 0.01, Burst: 2}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := edgeRelay(t, relay.ModeSOCKS5, port(t, up.Addr()), func(lc *relay.ListenerConfig) {
		lc.Verify, lc.Limiter = creds.Verify, lim
	})
	// Session 1: wrong password → 0x01, and the penalty takes the second token.
	c := dial(t, f.addr)
	_, _ = c.Write([]byte{5, 1, 2, 1, 1, 'u', 1, 'x'})
	if got := expectClosed(t, c); !bytes.Equal(got, []byte{5, 2, 1, 1}) {
		t.Fatalf("wrong password: got %x", got)
	}
	// Session 2: refused by the rate limit before any byte is read.
	// The reset can come so fast that connect(2) itself reports it.
	if c, err := net.DialTimeout("tcp", f.addr, 5*time.Second); err == nil {
		defer c.Close()
		_, _ = c.Write([]byte{5, 1, 2, 1, 1, 'u', 1, 'p'})
		if got := expectClosed(t, c); len(got) != 0 {
			t.Fatalf("rate-limited client got %x", got)
		}
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	waitStat(t, f.srv, "rate", func(st relay.Stats) bool {
		return st.Closed["auth_failed"] == 1 && st.Closed["rejected_source_limit"] == 1
	})
	if got := f.srv.EdgeStats()["test"].SourceRejected["source-rate"]; got != 1 {
		t.Errorf("SourceRejected[source-rate] = %d, want 1", got)
	}
}

// BenchmarkEdgeSessions: whole sessions (connect, handshake, 64-byte echo,
// close), one at a time, per listener mode — the handshake's cost over
// plain forwarding.
func BenchmarkEdgeSessions(b *testing.B) {
	up := newServer(b, echo)
	upAP := netip.MustParseAddrPort(up.Addr())
	pol, err := policy.New(policy.Config{Allow: []policy.Entry{{CIDR: "127.0.0.1/32", Ports: strconv.Itoa(int(upAP.Port()))}}})
	if err != nil {
		b.Fatal(err)
	}
	f := startRelay(b, []string{up.Addr()}, nil)
	socksAP, err := f.srv.AddListener(relay.ListenerConfig{Name: "socks", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Mode: relay.ModeSOCKS5, Policy: pol})
	if err != nil {
		b.Fatal(err)
	}
	httpAP, err := f.srv.AddListener(relay.ListenerConfig{Name: "http", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Mode: relay.ModeHTTPConnect, Policy: pol})
	if err != nil {
		b.Fatal(err)
	}
	ppAP, err := f.srv.AddListener(relay.ListenerConfig{Name: "pp", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: []netip.AddrPort{upAP},
		ProxyAccept: proxyproto.Any, Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		b.Fatal(err)
	}
	msg := bytes.Repeat([]byte{'x'}, 64)
	socksHello := socksReq("", upAP, 0)
	socksHello = append(socksHello, msg...)
	httpHello := append([]byte("CONNECT "+up.Addr()+" HTTP/1.1\r\n\r\n"), msg...)
	ppHello := append(proxyproto.AppendV1(nil, netip.MustParseAddrPort("192.0.2.1:1"), ppAP), msg...)
	for _, m := range []struct {
		name  string
		addr  string
		hello []byte
		skip  int // reply bytes before the echo
	}{
		{"forward", f.addr, msg, 0},
		{"proxy-v1", ppAP.String(), ppHello, 0},
		{"socks5", socksAP.String(), socksHello, 12},
		{"http-connect", httpAP.String(), httpHello, len(httpconnectEstablished)},
	} {
		b.Run(m.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, m.skip+len(msg))
			for b.Loop() {
				c, err := net.Dial("tcp", m.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(m.hello); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

const httpconnectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// Handshakes trickled one byte per write still complete (the parsers skip
// rescans until a head can be complete, never past it).
func TestTrickledHandshakes(t *testing.T) {
	up := newServer(t, echo)
	f := edgeRelay(t, relay.ModeHTTPConnect, port(t, up.Addr()), func(lc *relay.ListenerConfig) {
		lc.ProxyAccept, lc.Trusted = proxyproto.V2, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		lc.HandshakeTimeout = 20 * time.Second
	})
	hdr, _ := proxyproto.AppendV2(nil, netip.MustParseAddrPort("192.0.2.9:9"), netip.MustParseAddrPort(f.addr),
		proxyproto.TLV{Type: proxyproto.TypeNoop, Value: make([]byte, 100)})
	msg := append(hdr, "CONNECT echo.test:"+strconv.Itoa(int(port(t, up.Addr())))+" HTTP/1.1\r\nHost: x\r\nUser-Agent: trickle\r\n\r\n"...)
	c := dial(t, f.addr)
	_ = c.SetNoDelay(true)
	for i := range msg {
		if _, err := c.Write(msg[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%64 == 0 {
			time.Sleep(time.Millisecond) // let some bytes arrive alone (pacing, not synchronisation)
		}
	}
	if _, err := io.WriteString(c, "after"); err != nil {
		t.Fatal(err)
	}
	want := httpconnectEstablished + "after"
	got := make([]byte, len(want))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q, %v", got, err)
	}
}

// A refused upstream is reported in the protocol: SOCKS5 REP 5, HTTP 502.
func TestConnectFailureReplies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now: connect is refused
	fs := edgeRelay(t, relay.ModeSOCKS5, port(t, closed), nil)
	c := dial(t, fs.addr)
	_, _ = c.Write(socksReq("", netip.MustParseAddrPort(closed), 0))
	if rep := socksReply(t, c); rep != 5 {
		t.Fatalf("REP %d, want 5 (connection refused)", rep)
	}
	expectClosed(t, c)
	fh := edgeRelay(t, relay.ModeHTTPConnect, port(t, closed), nil)
	c = dial(t, fh.addr)
	if st := httpConnect(t, c, closed, ""); !strings.HasPrefix(st, "HTTP/1.1 502 ") {
		t.Fatalf("status %q, want 502", st)
	}
	expectClosed(t, c)
	for _, f := range []*fixture{fs, fh} {
		waitStat(t, f.srv, "refused", closedIs(relay.ReasonRefused, 1))
	}
}

// Review C6: a connect that times out answers SOCKS5 0x06 (TTL expired) and
// HTTP 504, as the protocol comments promise, not 0x01 / 502.
func TestConnectTimeoutReplies(t *testing.T) {
	hang := testnet.HangingAddr(t)
	fs := edgeRelay(t, relay.ModeSOCKS5, hang.Port(), nil)
	fs.srv.SetConnectTimeout(200 * time.Millisecond)
	c := dial(t, fs.addr)
	_, _ = c.Write(socksReq("", hang, 0))
	if rep := socksReply(t, c); rep != 6 {
		t.Fatalf("REP %d, want 6 (TTL expired: connect timeout)", rep)
	}
	expectClosed(t, c)
	fh := edgeRelay(t, relay.ModeHTTPConnect, hang.Port(), nil)
	fh.srv.SetConnectTimeout(200 * time.Millisecond)
	c = dial(t, fh.addr)
	if st := httpConnect(t, c, hang.String(), ""); !strings.HasPrefix(st, "HTTP/1.1 504 ") {
		t.Fatalf("status %q, want 504", st)
	}
	expectClosed(t, c)
	for _, f := range []*fixture{fs, fh} {
		waitStat(t, f.srv, "connect timeout", closedIs(relay.ReasonConnectTimeout, 1))
	}
}

// Single-acceptor mode hands sessions to other loops before they start: the
// handshake, the resolver's answer and the connect all land on the adopting
// loop.
func TestSOCKS5SingleAcceptor(t *testing.T) {
	up := newServer(t, echo)
	pol, err := policy.New(policy.Config{Allow: []policy.Entry{{CIDR: "127.0.0.1/32", Ports: strconv.Itoa(int(port(t, up.Addr())))}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := resolve.New(resolve.Config{Lookup: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	f := startRelay(t, nil, func(rc *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) {
		rc.Reuseport, rc.Loops = false, 3
		lc.Mode, lc.Policy, lc.Resolver = relay.ModeSOCKS5, pol, res
	})
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		upPort := port(t, up.Addr()) // on the test goroutine: port may call t.Fatal
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := "session " + strconv.Itoa(i)
			req := append(socksReq("echo.test", netip.AddrPort{}, upPort), msg...)
			if _, err := c.Write(req); err != nil {
				errs <- err
				return
			}
			const replies = 2 + 10 // method selection, then the reply with an IPv4 bound address
			got := make([]byte, replies+len(msg))
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if got[3] != 0 || string(got[replies:]) != msg { // got[3]: REP
				errs <- errors.New("bad reply or echo: " + strconv.Quote(string(got)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
