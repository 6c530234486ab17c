package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/edge/proxyproto"
	"github.com/relayd/relayd/relay"
)

// listenAddrs reads every listener's bound address from relayd's ready line.
func listenAddrs(t *testing.T, c *child) map[string]string {
	t.Helper()
	for line := range strings.SplitSeq(c.stderr.String(), "\n") {
		if !strings.Contains(line, "relayd ready") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for k, v := range m {
			if name, ok := strings.CutPrefix(k, "listen."); ok {
				out[name] = v.(string)
			}
		}
		return out
	}
	t.Fatal("no ready line")
	return nil
}

// accessLines returns the access log lines (JSON) that contain all of subs.
func accessLines(c *child, subs ...string) []string {
	var out []string
	for line := range strings.SplitSeq(c.stderr.String(), "\n") {
		ok := strings.Contains(line, `"reason"`)
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// waitCount waits (bounded) until exactly n access lines have all of subs:
// the log is written asynchronously, after the client saw the close.
func waitCount(t *testing.T, c *child, n int, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := len(accessLines(c, subs...))
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Errorf("%d access lines with %q, want %d", got, subs, n)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const page = "hello through relayd\n"

func pageServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, page) }))
	t.Cleanup(srv.Close)
	return srv
}

func runCurl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("curl", append([]string{"-sS", "--max-time", "15", "--noproxy", ""}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no *_proxy variables from the host
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// Acceptance 1: real curl through socks5 and http-connect listeners of a
// real relayd, with and without credentials; wrong ones fail with the
// protocol's code; a private target is refused by the policy.
func TestEdgeCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (Debian package curl)")
	}
	web := pageServer(t)
	webAddr := strings.TrimPrefix(web.URL, "http://")
	_, webPort, _ := net.SplitHostPort(webAddr)
	pol := fmt.Sprintf(`    policy: {allow: ["127.0.0.1/32 %s"]}
`, webPort)
	c := startRelayd(t, `listeners:
  - name: socks
    listen: 127.0.0.1:0
    mode: socks5
`+pol+`  - name: socksauth
    listen: 127.0.0.1:0
    mode: socks5
    auth: {users: ["alice:s3cret"]}
`+pol+`  - name: http
    listen: 127.0.0.1:0
    mode: http-connect
`+pol+`  - name: httpauth
    listen: 127.0.0.1:0
    mode: http-connect
    auth: {users: ["alice:s3cret"]}
`+pol+`relay:
  loops: 2
admin:
  listen: ""
`, "")
	addrs := listenAddrs(t, c)
	pageURL := "http://localhost:" + webPort + "/" // a name: relayd resolves it
	ipURL := "http://" + webAddr + "/"
	ok := []struct {
		name string
		args []string
	}{
		{"socks5-hostname", []string{"--socks5-hostname", addrs["socks"], pageURL}},
		{"socks5 by IP", []string{"--socks5", addrs["socks"], ipURL}},
		{"socks5 auth", []string{"-x", "socks5h://alice:s3cret@" + addrs["socksauth"], pageURL}},
		{"http connect", []string{"-p", "-x", "http://" + addrs["http"], pageURL}},
		{"http connect auth", []string{"-p", "-x", "http://alice:s3cret@" + addrs["httpauth"], ipURL}},
	}
	for _, tc := range ok {
		if out, code := runCurl(t, tc.args...); code != 0 || out != page {
			t.Errorf("%s: exit %d, %q", tc.name, code, out)
		}
	}
	bad := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		// CURLE_PROXY (97) with the SOCKS reason; CURLE_RECV_ERROR (56) with the CONNECT status.
		{"socks5 wrong password", []string{"-x", "socks5h://alice:wrong@" + addrs["socksauth"], pageURL}, 97, "User was rejected"},
		{"http wrong password", []string{"-p", "-x", "http://alice:wrong@" + addrs["httpauth"], pageURL}, 56, "407"},
		{"http no credentials", []string{"-p", "-x", "http://" + addrs["httpauth"], pageURL}, 56, "407"},
		{"socks5 private target", []string{"--socks5-hostname", addrs["socks"], "http://10.0.0.1/"}, 97, "(2)"}, // REP 2: not allowed by ruleset
		{"http metadata target", []string{"-p", "-x", "http://" + addrs["http"], "http://169.254.169.254/"}, 56, "403"},
		{"socks5 relayd itself", []string{"--socks5", addrs["socks"], "http://" + addrs["http"] + "/"}, 97, "(2)"},
	}
	for _, tc := range bad {
		out, code := runCurl(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.msg) {
			t.Errorf("%s: exit %d (want %d), %q (want %q)", tc.name, code, tc.code, out, tc.msg)
		}
	}
	waitCount(t, c, 1, `"listener":"socksauth"`, `"reason":"auth_failed"`)
	waitCount(t, c, 2, `"listener":"httpauth"`, `"reason":"auth_failed"`)
	waitCount(t, c, 3, `"reason":"policy_denied"`)
	waitCount(t, c, len(ok), `"reason":"eof"`)
	// A refused session's line says what was asked and by whom.
	for _, want := range [][]string{
		{`"listener":"socksauth"`, `"reason":"auth_failed"`, `"user":"alice"`},                                        // SOCKS5 logs in before it asks
		{`"listener":"httpauth"`, `"reason":"auth_failed"`, `"target":"localhost:` + webPort + `"`, `"user":"alice"`}, // wrong password
		{`"listener":"socks"`, `"reason":"policy_denied"`, `"target":"10.0.0.1:80"`},
		{`"listener":"http"`, `"reason":"policy_denied"`, `"target":"169.254.169.254:80"`},
		{`"listener":"socks"`, `"reason":"policy_denied"`, `"target":"` + addrs["http"] + `"`},
	} {
		if n := len(accessLines(c, want...)); n != 1 {
			t.Errorf("%d access lines with %q, want 1", n, want)
		}
	}
	if n := len(accessLines(c, `"listener":"httpauth"`, `"reason":"auth_failed"`, `"target":"localhost:`+webPort+`"`)); n != 2 {
		t.Errorf("%d refused CONNECT lines name the target, want 2 (with and without credentials)", n)
	}
	if n := len(accessLines(c, `"reason":"eof"`, `"target"`)); n != 0 {
		t.Errorf("%d relayed sessions' lines carry a target (only refused ones should)", n)
	}
}

// Acceptance 2: HAProxy (send-proxy, send-proxy-v2) in front of relayd; the
// ACL and the access log see the original client (127.0.0.2 / 127.0.0.3,
// HAProxy itself is 127.0.0.1). And relayd's send: v2 is accepted by
// HAProxy's accept-proxy.
func TestEdgeHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed (Debian package haproxy)")
	}
	web := pageServer(t)
	webAddr := strings.TrimPrefix(web.URL, "http://")
	// HAProxy's frontends are sockets made here and inherited as fd@3..,
	// so no port is guessed: clients wait in the backlog until it runs.
	var fronts []*net.TCPListener
	var files []*os.File
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		fronts, files = append(fronts, ln.(*net.TCPListener)), append(files, f)
	}
	c := startRelayd(t, fmt.Sprintf(`listeners:
  - name: pp
    listen: 127.0.0.1:0
    upstreams: [%s]
    proxy_protocol: {accept: any, trusted_sources: [127.0.0.1/32]}
    acl: {deny: [127.0.0.3/32]}
  - name: sendpp
    listen: 127.0.0.1:0
    upstreams: [%s]
    proxy_protocol: {send: v2}
relay:
  loops: 2
admin:
  listen: ""
`, webAddr, fronts[2].Addr()), "")
	addrs := listenAddrs(t, c)
	cfg := fmt.Sprintf(`global
    maxconn 100
defaults
    mode tcp
    retries 0
    timeout connect 5s
    timeout client 20s
    timeout server 20s
frontend v1
    bind fd@3
    default_backend relayd_v1
frontend v2
    bind fd@4
    default_backend relayd_v2
frontend from_relayd
    bind fd@5 accept-proxy
    default_backend web
backend relayd_v1
    server s %s send-proxy
backend relayd_v2
    server s %s send-proxy-v2
backend web
    server s %s
`, addrs["pp"], addrs["pp"], webAddr)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var hout lockedBuf
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = &hout, &hout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // the haproxy this test started, by its PID
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", hout.String())
		}
	})
	for i, f := range files {
		f.Close()
		fronts[i].Close() // HAProxy holds the sockets now
	}

	get := func(front net.Addr, from string) (string, error) {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		conn, err := d.Dial("tcp", front.String())
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
			return "", err
		}
		b, err := io.ReadAll(conn)
		return string(b), err
	}
	for i, front := range fronts[:2] {
		resp, err := get(front.Addr(), "127.0.0.2")
		if err != nil || !strings.HasSuffix(resp, page) {
			t.Fatalf("v%d via HAProxy from 127.0.0.2: %q %v", i+1, resp, err)
		}
		if resp, _ := get(front.Addr(), "127.0.0.3"); strings.Contains(resp, page) {
			t.Fatalf("v%d: denied 127.0.0.3 got the page", i+1)
		}
	}
	waitCount(t, c, 2, `"listener":"pp"`, `"client":"127.0.0.2:`, `"reason":"eof"`)
	waitCount(t, c, 2, `"listener":"pp"`, `"client":"127.0.0.3:`, `"reason":"rejected_acl"`)
	if n := len(accessLines(c, `"listener":"pp"`, `"client":"127.0.0.1:`)); n != 0 {
		t.Errorf("%d access lines name HAProxy's address instead of the client", n)
	}

	// relayd → HAProxy accept-proxy → web: HAProxy drops a connection
	// whose header it cannot parse, so the page arriving proves the header.
	conn, err := net.DialTimeout("tcp", addrs["sendpp"], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(conn); err != nil || !strings.HasSuffix(string(b), page) {
		t.Fatalf("send v2 through HAProxy accept-proxy: %q %v", b, err)
	}
}

// applyEdge maps every edge key: credentials from the list and the file,
// PROXY versions, trusted CIDRs, ACL, limiter, and a policy that knows
// relayd's own addresses.
func TestApplyEdge(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("# test\nbob:fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.LoadBytes("edge.yaml", []byte(`listeners:
  - name: s
    listen: 127.0.0.1:1080
    mode: socks5
    handshake_timeout: 3s
    auth: {users: ["alice:s3:cret"], file: `+users+`}
    proxy_protocol: {accept: any, trusted_sources: [10.0.0.0/8, "::1"], send: v1}
    acl: {allow: [127.0.0.0/8], deny: [127.0.0.3]}
    limits: {per_source_sessions: 2, per_source_rate: 5}
    policy: {allow: ["127.0.0.1/32 8080,9000-9001"], deny: ["127.0.0.1 9001"]}
  - name: f
    listen: 127.0.0.1:7000
    upstreams: [127.0.0.1:7001]
resolver: {workers: 1}
`), configs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var edge edgeShared
	edge.setup(cfg)
	t.Cleanup(edge.close)
	lc, err := listenerConfig(&edge, cfg.Listeners[0])
	if err != nil {
		t.Fatal(err)
	}
	if lc.Mode != relay.ModeSOCKS5 || lc.HandshakeTimeout != 3*time.Second || lc.ProxyAccept != proxyproto.Any || lc.ProxySend != proxyproto.V1 {
		t.Errorf("mode %q timeout %v accept %v send %v", lc.Mode, lc.HandshakeTimeout, lc.ProxyAccept, lc.ProxySend)
	}
	for _, c := range []struct {
		u, p string
		ok   bool
	}{{"alice", "s3:cret", true}, {"bob", "fromfile", true}, {"alice", "fromfile", false}, {"bob", "s3:cret", false}, {"eve", "", false}} {
		if got := lc.Verify([]byte(c.u), []byte(c.p)); got != c.ok {
			t.Errorf("Verify(%s, %s) = %v", c.u, c.p, got)
		}
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}; !slices.Equal(lc.Trusted, want) {
		t.Errorf("trusted %v", lc.Trusted)
	}
	if _, ok := lc.ACL.Check(netip.MustParseAddr("127.0.0.3")); ok {
		t.Error("ACL admits 127.0.0.3")
	}
	if _, ok := lc.ACL.Check(netip.MustParseAddr("127.0.0.2")); !ok {
		t.Error("ACL refuses 127.0.0.2")
	}
	if lc.Limiter == nil || lc.Resolver == nil {
		t.Fatal("no limiter or resolver")
	}
	for ap, want := range map[string]string{
		"127.0.0.1:8080": "allow:127.0.0.1/32:8080,9000-9001", "127.0.0.1:9001": "deny:127.0.0.1/32:9001",
		"127.0.0.1:7000": "self", "127.0.0.1:1080": "self", "127.0.0.1:22": "loopback",
	} {
		if rule, _ := lc.Policy.Check(netip.MustParseAddrPort(ap)); rule != want {
			t.Errorf("Check(%s) = %s, want %s", ap, rule, want)
		}
	}
	fwd, err := listenerConfig(&edge, cfg.Listeners[1])
	if err != nil {
		t.Fatal(err)
	}
	if fwd.Policy != nil || fwd.Resolver != nil || fwd.ACL != nil || fwd.Limiter != nil || fwd.Verify != nil || fwd.ProxyAccept != 0 {
		t.Errorf("forward listener got edge settings: %+v", fwd)
	}
}
