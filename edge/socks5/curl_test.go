package socks5

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/testnet"
)

// miniServer drives Server over real sockets, blocking-style, the way the
// relay loop will drive it non-blockingly. Names resolve only through names
// (always to loopback), so no test traffic leaves 127.0.0.1.
type miniServer struct {
	srv   *testnet.Server
	cfg   Config
	names map[string]netip.Addr
	mu    sync.Mutex
	raw   [][]byte // handshake bytes each client sent
	errs  []error  // Feed's final result per session
}

func startMini(t *testing.T, cfg Config, names map[string]netip.Addr) *miniServer {
	m := &miniServer{cfg: cfg, names: names}
	m.srv = testnet.Serve(t, "tcp", "127.0.0.1:0", m.serve)
	return m
}

func (m *miniServer) record(raw []byte, err error) {
	m.mu.Lock()
	m.raw = append(m.raw, raw)
	m.errs = append(m.errs, err)
	m.mu.Unlock()
}

func (m *miniServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := New(m.cfg)
	buf := make([]byte, 0, MaxHandshake)
	var raw []byte
	for {
		k, err := c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			m.record(raw, err)
			return
		}
		raw = append(raw, buf[len(buf):len(buf)+k]...)
		buf = buf[:len(buf)+k]
		n, out, ferr := s.Feed(buf, nil)
		buf = append(buf[:0], buf[n:]...)
		if ferr != nil && !errors.Is(ferr, ErrNeedMore) {
			m.record(raw, ferr) // before the reply: the test reads it once curl exits
			c.Write(out)
			return
		}
		c.Write(out)
		if ferr == nil {
			break
		}
	}
	req := s.Request()
	target := req.Addr
	if req.Host != "" {
		a, ok := m.names[req.Host]
		if !ok {
			m.record(raw, fmt.Errorf("unknown name %q", req.Host))
			c.Write(AppendReply(nil, HostUnreachable, netip.AddrPort{}))
			return
		}
		target = netip.AddrPortFrom(a, req.Port)
	}
	if !target.Addr().IsLoopback() {
		m.record(raw, fmt.Errorf("non-loopback target %v", target))
		c.Write(AppendReply(nil, NotAllowed, netip.AddrPort{}))
		return
	}
	up, err := net.DialTimeout("tcp", target.String(), 5*time.Second)
	if err != nil {
		m.record(raw, err)
		c.Write(AppendReply(nil, DialReply(err), netip.AddrPort{}))
		return
	}
	defer up.Close()
	m.record(raw, nil)
	c.Write(AppendReply(nil, Succeeded, up.LocalAddr().(*net.TCPAddr).AddrPort()))
	testnet.Splice(c, up, buf) // buf: pipelined payload
}

func TestCurl(t *testing.T) {
	webPort := testnet.PageServer(t, "hello via socks\n")
	names := map[string]netip.Addr{"example.test": netip.MustParseAddr("127.0.0.1")}
	run := func(args ...string) (string, int) { return testnet.Curl(t, args...) }

	noAuth := startMini(t, Config{}, names)
	withAuth := startMini(t, Config{Verify: creds(t)}, names)
	for _, tc := range []struct {
		name   string
		srv    *miniServer
		args   []string
		code   int
		out    string
		greet  string // hex prefix curl must have sent
		result error
	}{
		{"hostname no auth", noAuth, []string{"--socks5-hostname", noAuth.srv.Addr().String(),
			fmt.Sprintf("http://example.test:%d/", webPort)}, 0, "hello via socks\n", curlGreetNoAuth, nil},
		{"ipv4 no auth", noAuth, []string{"--socks5", noAuth.srv.Addr().String(),
			fmt.Sprintf("http://127.0.0.1:%d/", webPort)}, 0, "hello via socks\n", curlGreetNoAuth, nil},
		{"hostname with auth", withAuth, []string{"--socks5-hostname", withAuth.srv.Addr().String(), "--proxy-user", "user:pass",
			fmt.Sprintf("http://example.test:%d/", webPort)}, 0, "hello via socks\n", curlGreetAuth + curlAuth, nil},
		{"wrong password", withAuth, []string{"--socks5-hostname", withAuth.srv.Addr().String(), "--proxy-user", "user:nope",
			fmt.Sprintf("http://example.test:%d/", webPort)}, 97, "", curlGreetAuth, ErrAuthFailed},
		{"no credentials", withAuth, []string{"--socks5-hostname", withAuth.srv.Addr().String(),
			fmt.Sprintf("http://example.test:%d/", webPort)}, 97, "", curlGreetNoAuth, ErrNoAcceptableMethod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.srv.mu.Lock()
			before := len(tc.srv.errs)
			tc.srv.mu.Unlock()
			out, code := run(tc.args...)
			if code != tc.code || (tc.code == 0 && out != tc.out) {
				t.Fatalf("curl exit %d output %q; want %d %q", code, out, tc.code, tc.out)
			}
			// The session's record is written before the reply is sent, so it is there now.
			tc.srv.mu.Lock()
			defer tc.srv.mu.Unlock()
			if len(tc.srv.errs) != before+1 {
				t.Fatalf("sessions recorded: %d, want %d", len(tc.srv.errs), before+1)
			}
			raw, res := tc.srv.raw[before], tc.srv.errs[before]
			if !errors.Is(res, tc.result) && !(tc.result == nil && res == nil) {
				t.Fatalf("server result %v, want %v", res, tc.result)
			}
			if g := hex.EncodeToString(raw); !strings.HasPrefix(g, strings.ReplaceAll(tc.greet, " ", "")) {
				t.Fatalf("curl sent %s, want prefix %s", g, tc.greet)
			}
		})
	}
}
