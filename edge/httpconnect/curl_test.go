package httpconnect

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/testnet"
)

// miniProxy drives Parse over real sockets the way the relay loop will.
// Names resolve only through names (to loopback): no traffic leaves 127.0.0.1.
type miniProxy struct {
	srv   *testnet.Server
	cfg   Config
	names map[string]netip.Addr
	mu    sync.Mutex
	heads []string
	errs  []error
}

func startMini(t *testing.T, cfg Config, names map[string]netip.Addr) *miniProxy {
	m := &miniProxy{cfg: cfg, names: names}
	m.srv = testnet.Serve(t, "tcp", "127.0.0.1:0", m.serve)
	return m
}

func (m *miniProxy) record(head []byte, err error) {
	m.mu.Lock()
	m.heads = append(m.heads, string(head))
	m.errs = append(m.errs, err)
	m.mu.Unlock()
}

func (m *miniProxy) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 0, DefaultMaxHead)
	var req Request
	var n int
	for {
		k, err := c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			m.record(buf, err)
			return
		}
		buf = buf[:len(buf)+k]
		req, n, err = Parse(buf, m.cfg)
		if errors.Is(err, ErrNeedMore) {
			continue
		}
		if err != nil {
			m.record(buf, err)
			c.Write(AppendError(nil, err))
			return
		}
		break
	}
	target := req.Addr
	if req.Host != "" {
		a, ok := m.names[req.Host]
		if !ok {
			m.record(buf[:n], fmt.Errorf("unknown name %q", req.Host))
			c.Write(AppendResponse(nil, 502))
			return
		}
		target = netip.AddrPortFrom(a, req.Port)
	}
	if !target.Addr().IsLoopback() {
		m.record(buf[:n], fmt.Errorf("non-loopback target %v", target))
		c.Write(AppendResponse(nil, 403))
		return
	}
	up, err := net.DialTimeout("tcp", target.String(), 5*time.Second)
	if err != nil {
		m.record(buf[:n], err)
		c.Write(AppendResponse(nil, DialStatus(err)))
		return
	}
	defer up.Close()
	m.record(buf[:n], nil)
	c.Write([]byte(Established))
	testnet.Splice(c, up, buf[n:])
}

func TestCurl(t *testing.T) {
	webPort := testnet.PageServer(t, "hello via connect\n")
	names := map[string]netip.Addr{"example.test": netip.MustParseAddr("127.0.0.1")}
	open := startMini(t, Config{}, names)
	locked := startMini(t, Config{Verify: creds(t)}, names)
	url := fmt.Sprintf("http://example.test:%d/", webPort)
	wantHead := func(auth string) string {
		return fmt.Sprintf("CONNECT example.test:%d HTTP/1.1\r\nHost: example.test:%d\r\n%sUser-Agent: curl/", webPort, webPort, auth)
	}

	for _, tc := range []struct {
		name   string
		srv    *miniProxy
		args   []string
		code   int    // curl exit code
		out    string // body, or the status line curl prints with -w
		head   string // prefix of the head the server saw
		result error
	}{
		{"no auth", open, []string{"-p", "-x", "http://" + open.srv.Addr().String(), url}, 0, "hello via connect\n", wantHead(""), nil},
		{"auth", locked, []string{"-p", "-x", "http://" + locked.srv.Addr().String(), "--proxy-user", "user:pass", url},
			0, "hello via connect\n", wantHead("Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"), nil},
		{"wrong password", locked, []string{"-p", "-x", "http://" + locked.srv.Addr().String(), "--proxy-user", "user:nope", url},
			56, "", wantHead("Proxy-Authorization: Basic dXNlcjpub3Bl\r\n"), ErrAuthFailed},
		{"missing credentials", locked, []string{"-p", "-x", "http://" + locked.srv.Addr().String(), url},
			56, "", wantHead(""), ErrAuthRequired},
		{"ipv6 literal", open, []string{"-p", "-x", "http://" + open.srv.Addr().String(), fmt.Sprintf("http://[::1]:%d/", webPort)},
			-1, "", fmt.Sprintf("CONNECT [::1]:%d HTTP/1.1\r\n", webPort), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.srv.mu.Lock()
			before := len(tc.srv.errs)
			tc.srv.mu.Unlock()
			out, code := testnet.Curl(t, tc.args...)
			// -1: the outcome depends on whether this host has ::1; only the head is asserted.
			if tc.code >= 0 && (code != tc.code || string(out) != tc.out) {
				t.Fatalf("curl exit %d output %q; want %d %q", code, out, tc.code, tc.out)
			}
			tc.srv.mu.Lock()
			defer tc.srv.mu.Unlock()
			if len(tc.srv.errs) != before+1 {
				t.Fatalf("sessions recorded %d, want %d", len(tc.srv.errs), before+1)
			}
			head, res := tc.srv.heads[before], tc.srv.errs[before]
			if len(head) < len(tc.head) || head[:len(tc.head)] != tc.head {
				t.Fatalf("head %q, want prefix %q", head, tc.head)
			}
			if tc.code >= 0 && !errors.Is(res, tc.result) && !(res == nil && tc.result == nil) {
				t.Fatalf("server result %v, want %v", res, tc.result)
			}
		})
	}
}
