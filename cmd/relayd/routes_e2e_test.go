package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test: relayd never sees
// a key, the clients verify the upstreams' certificates against it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string // PEM, for curl and openssl
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relayd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), file: filepath.Join(t.TempDir(), "ca.pem")}
	ca.pool.AddCert(cert)
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// nameServer is an HTTPS (or, with no names, plain HTTP) server that
// answers every request with its name, the protocol and the sha256 of the
// request body.
func nameServer(t *testing.T, ca *testCA, name string, h2 bool, names ...string) string {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		fmt.Fprintf(w, "%s %s %d %x", name, r.Proto, n, sum.Sum(nil))
	}))
	if len(names) == 0 {
		s.Start()
	} else {
		s.EnableHTTP2 = h2
		s.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, names...)}}
		s.StartTLS()
	}
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// slowConn writes one byte at a time, gap apart: a client whose
// ClientHello arrives in as many segments.
type slowConn struct {
	net.Conn
	gap time.Duration
}

func (c *slowConn) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := c.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
		time.Sleep(c.gap) // pacing the client's bytes, not waiting for relayd
	}
	return len(b), nil
}

// One listener routes TLS by SNI (exact and wildcard) and ALPN, and
// plaintext HTTP by Host, to servers whose certificates the clients verify
// end to end: curl, openssl s_client and Go's crypto/tls reach the server
// the name says, h2 is routed by ALPN, an unknown name goes to the
// default group. A ClientHello sent one byte at a time over 2 s and one of
// more than 16 KiB route as well; one that never completes is closed at
// the handshake timeout. Counted by route, and named in the access line;
// a SIGHUP changes a route in place.
func TestRoutesTLSAndHost(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	ca := newTestCA(t)
	a := nameServer(t, ca, "A", false, "a.example", "*.a.example")
	h2 := nameServer(t, ca, "H2", true, "b.example")
	d := nameServer(t, ca, "D", false, "unknown.example")
	web := nameServer(t, nil, "WEB", false)
	cfg := fmt.Sprintf(`listeners:
  - name: tls
    listen: 127.0.0.1:0
    upstreams: [%s]
    handshake_timeout: 3s
    routes:
      - name: a
        sni: ["a.example", "*.a.example"]
        upstreams: [%s]
      - name: h2
        alpn: ["h2"]
        upstreams: [%s]
      - name: web
        host: ["www.example"]
        upstreams: [%s]
admin:
  listen: 127.0.0.1:0
`, d, a, h2, web)
	c := startRelayd(t, cfg, "")
	adm := adminAddr(t, c)
	_, port, _ := net.SplitHostPort(c.addr)
	curl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "20", "--cacert", ca.file}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v %s", args, err, out)
		}
		return string(out)
	}
	resolve := func(name string) []string {
		return []string{"--resolve", name + ":" + port + ":127.0.0.1", "https://" + name + ":" + port + "/"}
	}
	empty := "0 " + hex.EncodeToString(func() []byte { s := sha256.Sum256(nil); return s[:] }())
	for _, k := range []struct {
		args []string
		want string
	}{
		{append([]string{"--http1.1"}, resolve("a.example")...), "A HTTP/1.1 " + empty},
		{append([]string{"--http1.1"}, resolve("x.A.example")...), "A HTTP/1.1 " + empty},
		{append([]string{"--http1.1"}, resolve("unknown.example")...), "D HTTP/1.1 " + empty},
		{append([]string{"--http2"}, resolve("b.example")...), "H2 HTTP/2.0 " + empty},
	} {
		if got := curl(k.args...); got != k.want {
			t.Fatalf("curl %v: %q, want %q", k.args, got, k.want)
		}
	}

	// openssl s_client, verifying a.example against the CA.
	if _, err := exec.LookPath("openssl"); err == nil {
		cmd := exec.Command("openssl", "s_client", "-connect", c.addr, "-servername", "a.example", "-CAfile", ca.file,
			"-verify_return_error", "-verify_hostname", "a.example", "-quiet")
		cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\nHost: a.example\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "A HTTP/1.0 "+empty) {
			t.Fatalf("openssl s_client: %v %s", err, out)
		}
	}

	// Plain HTTP by Host, a 1 MiB body forwarded byte for byte.
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	bodyFile := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(bodyFile, body, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if got, want := curl("--data-binary", "@"+bodyFile, "--resolve", "www.example:"+port+":127.0.0.1", "http://www.example:"+port+"/up"),
		fmt.Sprintf("WEB HTTP/1.1 %d %x", len(body), sum); got != want {
		t.Fatalf("HTTP by Host: %q, want %q", got, want)
	}

	goTLS := func(name string, conn net.Conn, protos []string) string {
		t.Helper()
		tc := tls.Client(conn, &tls.Config{ServerName: name, RootCAs: ca.pool, NextProtos: protos})
		defer tc.Close()
		_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(tc, "GET / HTTP/1.0\r\nHost: "+name+"\r\n\r\n"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := io.ReadAll(tc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, resp, _ := strings.Cut(string(b), "\r\n\r\n")
		return resp
	}
	dial := func() net.Conn {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	// A ClientHello in 1-byte writes over about 2 s (Go's is ~1.9 KB with
	// its post-quantum key share): routed within the 3 s timeout.
	if got := goTLS("a.example", &slowConn{Conn: dial(), gap: 2 * time.Second / 1900}, nil); got != "A HTTP/1.0 "+empty {
		t.Fatalf("1-byte writes: %q", got)
	}
	// More than 16 KiB of ClientHello (two records): 80 ALPN names of 200
	// bytes before http/1.1, which the server picks.
	var big []string
	for i := range 80 {
		big = append(big, strings.Repeat(string(rune('a'+i%26)), 200))
	}
	big = append(big, "http/1.1")
	if got := goTLS("big.a.example", dial(), big); got != "A HTTP/1.0 "+empty {
		t.Fatalf("a 16 KiB ClientHello: %q", got)
	}
	// A hello that never completes: closed at the timeout, counted.
	stalled := dial()
	defer stalled.Close()
	if _, err := stalled.Write([]byte{0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3}); err != nil {
		t.Fatal(err)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := stalled.Read(make([]byte, 1)); n != 0 || err == nil || os.IsTimeout(err) {
		t.Fatalf("the stalled hello: %d %v", n, err)
	}
	waitFor(t, 10*time.Second, "the counters", func() bool {
		return scrape(t, adm, `relayd_route_sessions_total{listener="tls",route="a"}`) == 5 &&
			scrape(t, adm, `relayd_route_sessions_total{listener="tls",route="h2"}`) == 1 &&
			scrape(t, adm, `relayd_route_sessions_total{listener="tls",route="web"}`) == 1 &&
			scrape(t, adm, `relayd_route_unmatched_total{listener="tls"}`) == 1 &&
			scrape(t, adm, `relayd_listener_sessions_closed_total{listener="tls",reason="handshake_timeout"}`) == 1
	})
	// SIGHUP with the web route's Host changed: taken at once, no restart.
	if err := os.WriteFile(c.cfgFile, []byte(strings.Replace(cfg, `host: ["www.example"]`, `host: ["www2.example"]`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the reloaded route", func() bool {
		out, err := exec.Command("curl", "-sS", "--max-time", "5", "--resolve", "www2.example:"+port+":127.0.0.1", "http://www2.example:"+port+"/").CombinedOutput()
		return err == nil && string(out) == "WEB HTTP/1.1 "+empty
	})
	bigUp := regexp.MustCompile(`"bytes_up":(\d+),[^\n]*"sni":"big\.a\.example"`)
	waitFor(t, 10*time.Second, "access lines with route and SNI", func() bool {
		e := c.stderr.String()
		m := append(bigUp.FindStringSubmatch(e), "", "")
		n, _ := strconv.Atoi(m[1])
		return n > 16<<10 && strings.Contains(e, `"route":"a","sni":"x.a.example"`) && strings.Contains(e, `"route":"default","sni":"unknown.example"`) &&
			strings.Contains(e, `"route":"web"}`) && strings.Contains(e, `"route":"h2","sni":"b.example"`)
	})
}
