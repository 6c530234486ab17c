//go:build linux

package relay

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/edge/policy"
	"github.com/relayd/relayd/edge/proxyproto"
	"github.com/relayd/relayd/edge/route"
	"github.com/relayd/relayd/internal/testnet"
)

// recorder is an upstream that reports the first n bytes each connection
// sends it, then keeps reading until the peer closes.
type recorder struct {
	addr netip.AddrPort
	got  chan []byte
}

func newRecorder(t *testing.T, n int) *recorder {
	r := &recorder{got: make(chan []byte, 16)}
	r.addr = testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		b := make([]byte, n)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, b); err == nil {
			r.got <- b
		}
		_, _ = io.Copy(io.Discard, c)
	}).AddrPort()
	return r
}

func (r *recorder) wait(t *testing.T, what string) []byte {
	t.Helper()
	select {
	case b := <-r.got:
		return b
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: nothing reached the upstream", what)
		return nil
	}
}

// clientHello is Go's ClientHello for name.
func clientHello(t *testing.T, name string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() { _ = tls.Client(c, &tls.Config{ServerName: name}).Handshake(); c.Close() }()
	hdr := make([]byte, 5)
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// The edges of peeking, on an injected clock: a client that sends nothing
// is routed as "other" at the handshake timeout (server-speaks-first),
// one whose hello stops halfway is closed then (handshake_timeout), an
// SSLv2 hello and a malformed one are refused at once (handshake_error),
// other bytes go to "other" at once, an HTTP head split mid-Host routes by
// Host; each upstream gets exactly the bytes sent.
func TestPeekEdges(t *testing.T) {
	hello := clientHello(t, "a.example")
	httpReq := []byte("GET / HTTP/1.1\r\nHost: www.example\r\n\r\n")
	a, web, other := newRecorder(t, len(hello)), newRecorder(t, len(httpReq)), newRecorder(t, 3)
	def := newRecorder(t, 1)
	in := startInjected(t, []netip.AddrPort{def.addr}, func(_ *Config, lc *ListenerConfig) {
		lc.Routes = []Route{
			{Rule: route.Rule{Name: "a", SNI: []string{"a.example"}}, Upstreams: []netip.AddrPort{a.addr}},
			{Rule: route.Rule{Name: "web", Host: []string{"www.example"}}, Upstreams: []netip.AddrPort{web.addr}},
			{Rule: route.Rule{Name: "other", Protocol: "other"}, Upstreams: []netip.AddrPort{other.addr}},
		}
	})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", in.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	peeking := func(n int64) {
		t.Helper()
		waitCond(t, "sessions peeking", func() bool {
			p := in.srv.Sessions(SessionQuery{Limit: 100})
			k := int64(0)
			for _, s := range p.Sessions {
				if s.State == "peek" {
					k++
				}
			}
			return k == n
		})
	}
	silent, partial := dial(), dial()
	if _, err := partial.Write(hello[:len(hello)/2]); err != nil {
		t.Fatal(err)
	}
	peeking(2)
	in.advance(t, defaultHandshakeTimeout)
	// The silent one is relaying to "other" now: its first bytes go there.
	if _, err := silent.Write([]byte("EHL")); err != nil {
		t.Fatal(err)
	}
	if b := other.wait(t, "silent client"); string(b) != "EHL" {
		t.Fatalf("other got %q", b)
	}
	closedNow(t, partial)

	for _, bad := range [][]byte{{0x80, 0x2e, 1, 0, 2}, {0x16, 3, 1, 0, 0}} {
		c := dial()
		if _, err := c.Write(bad); err != nil {
			t.Fatal(err)
		}
		closedNow(t, c)
	}
	ssh := dial()
	if _, err := ssh.Write([]byte("SSH")); err != nil {
		t.Fatal(err)
	}
	if b := other.wait(t, "ssh"); string(b) != "SSH" {
		t.Fatalf("other got %q", b)
	}
	h := dial()
	for _, part := range [][]byte{httpReq[:18], httpReq[18:]} {
		if _, err := h.Write(part); err != nil {
			t.Fatal(err)
		}
		if len(part) == 18 {
			peeking(1)
		}
	}
	if b := web.wait(t, "HTTP by Host"); !bytes.Equal(b, httpReq) {
		t.Fatalf("web got %q", b)
	}
	tl := dial()
	if _, err := tl.Write(hello); err != nil {
		t.Fatal(err)
	}
	if b := a.wait(t, "TLS by SNI"); !bytes.Equal(b, hello) {
		t.Fatal("a got other bytes than the hello")
	}
	waitCond(t, "the counts", func() bool {
		st := in.srv.Stats()
		es := in.srv.EdgeStats()["t"]
		return st.Closed["handshake_timeout"] == 1 && st.Closed["handshake_error"] == 2 &&
			es.Routed["other"] == 2 && es.Routed["web"] == 1 && es.Routed["a"] == 1 && es.Routed[route.Default] == 0
	})
}

// With PROXY protocol in front and behind: the accepted header's source
// is the client, what follows it is peeked, and the route's upstream gets
// relayd's own v2 header, then exactly the client's bytes. A reload that
// drops a route retires its group in the connector; one that adds a route
// registers it.
func TestPeekBehindProxyAndReload(t *testing.T) {
	hello := clientHello(t, "a.example")
	v2, err := proxyproto.AppendV2(nil, netip.MustParseAddrPort("10.1.2.3:4000"), netip.MustParseAddrPort("10.0.0.1:443"))
	if err != nil {
		t.Fatal(err)
	}
	a := newRecorder(t, len(v2)+len(hello))
	def := newRecorder(t, 1)
	base := func(lc *ListenerConfig) {
		lc.ProxyAccept, lc.Trusted, lc.ProxySend = proxyproto.V1, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, proxyproto.V2
	}
	var lcfg ListenerConfig
	in := startInjected(t, []netip.AddrPort{def.addr}, func(_ *Config, lc *ListenerConfig) {
		base(lc)
		lc.Routes = []Route{
			{Rule: route.Rule{Name: "a", SNI: []string{"a.example"}}, Upstreams: []netip.AddrPort{a.addr}},
			{Rule: route.Rule{Name: "gone", ALPN: []string{"x"}}, Upstreams: []netip.AddrPort{def.addr}},
		}
		lcfg = *lc
	})
	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err = c.Write(append([]byte("PROXY TCP4 10.1.2.3 10.0.0.1 4000 443\r\n"), hello...)); err != nil {
		t.Fatal(err)
	}
	b := a.wait(t, "behind PROXY")
	h, n, err := proxyproto.Parse(b, proxyproto.V2)
	if err != nil || h.Src != netip.MustParseAddrPort("10.1.2.3:4000") || !bytes.Equal(b[n:], hello) {
		t.Fatalf("the upstream got a header %+v (%v) and %d more bytes", h, err, len(b)-n)
	}
	groups := func() []string {
		var names []string
		for _, u := range in.srv.cfg.Dialer.(*connector.Pool).UpstreamStats() {
			names = append(names, u.Listener)
		}
		slices.Sort(names)
		return slices.Compact(names)
	}
	if g := groups(); !slices.Equal(g, []string{"t", "t/a", "t/gone"}) {
		t.Fatalf("groups %q", g)
	}
	next := lcfg
	next.Routes = []Route{lcfg.Routes[0], {Rule: route.Rule{Name: "new", Protocol: "http"}, Upstreams: []netip.AddrPort{def.addr}}}
	if err := in.srv.Update(next); err != nil {
		t.Fatal(err)
	}
	if g := groups(); !slices.Equal(g, []string{"t", "t/a", "t/new"}) {
		t.Fatalf("groups after the reload %q", g)
	}
	next.Routes = nil
	if err := in.srv.Update(next); err != nil {
		t.Fatal(err)
	}
	if g := groups(); !slices.Equal(g, []string{"t"}) {
		t.Fatalf("groups after the routes went %q", g)
	}
}

// The source ACL and the per-source limit apply before any byte is
// peeked: a denied source and a source over its limit are refused at
// once, counted, while the admitted session is routed.
func TestPeekAfterAdmission(t *testing.T) {
	hello := clientHello(t, "a.example")
	a := newRecorder(t, len(hello))
	acl, err := policy.NewSourceACL(nil, []string{"127.0.0.3/32"})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := policy.NewSourceLimiter(policy.LimiterConfig{MaxConcurrent: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	in := startInjected(t, []netip.AddrPort{a.addr}, func(_ *Config, lc *ListenerConfig) {
		lc.ACL, lc.Limiter = acl, lim
		lc.Routes = []Route{{Rule: route.Rule{Name: "a", SNI: []string{"a.example"}}, Upstreams: []netip.AddrPort{a.addr}}}
	})
	from := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", in.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	first := from("127.0.0.2")
	if _, err := first.Write(hello); err != nil {
		t.Fatal(err)
	}
	if b := a.wait(t, "the admitted session"); !bytes.Equal(b, hello) {
		t.Fatal("other bytes than the hello")
	}
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} { // over the per-source limit of 1; denied by the ACL
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		if c, err := d.Dial("tcp", in.addr); err == nil { // else reset already, as refused clients are
			closedNow(t, c)
			c.Close()
		}
	}
	waitCond(t, "the refusals", func() bool {
		st := in.srv.Stats()
		return st.Closed["rejected_source_limit"] == 1 && st.Closed["rejected_acl"] == 1 && in.srv.EdgeStats()["t"].Routed["a"] == 1
	})
}
