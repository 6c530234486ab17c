package proxyproto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestHAProxy checks interoperability with a real PROXY protocol peer:
// HAProxy's send-proxy and send-proxy-v2 (with a unique-id TLV) are parsed
// by Parse, and headers built by AppendV1/AppendV2 are accepted by HAProxy's
// accept-proxy, which re-emits the claimed addresses toward our backend.
// Every socket is on 127.0.0.1; the addresses inside headers are only data.
func TestHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed (Debian package haproxy)")
	}
	listen := func() *net.TCPListener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln.(*net.TCPListener)
	}
	backend := listen()
	defer backend.Close()
	// Frontends are created here and inherited by HAProxy as fd@3.., so no
	// port is ever guessed and clients queue in the backlog until it runs.
	fronts := []*net.TCPListener{listen(), listen(), listen(), listen()}
	var files []*os.File
	for _, ln := range fronts {
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	be := backend.Addr().String()
	cfg := fmt.Sprintf(`global
    maxconn 100
    log stderr format raw local0 info
defaults
    log global
    option tcplog
    mode tcp
    timeout connect 5s
    timeout client 20s
    timeout server 20s
frontend send_v1
    bind fd@3
    default_backend v1
frontend send_v2
    bind fd@4
    unique-id-format relayd-uid-42
    default_backend v2
frontend accept_then_v1
    bind fd@5 accept-proxy
    default_backend v1
frontend accept_then_v2
    bind fd@6 accept-proxy
    unique-id-format relayd-uid-42
    default_backend v2
backend v1
    server s %s send-proxy
backend v2
    server s %s send-proxy-v2 proxy-v2-options unique-id
`, be, be)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // the haproxy this test started, by its PID
		<-exited
	})
	for i, f := range files {
		f.Close()
		fronts[i].Close() // HAProxy holds the sockets now
	}

	type got struct {
		h       Header
		payload string
		err     error
	}
	accepted := make(chan got, 1)
	serveOne := func() {
		c, err := backend.Accept()
		if err != nil {
			accepted <- got{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 0, MaxLen)
		for {
			k, err := c.Read(buf[len(buf):cap(buf)])
			if err != nil {
				accepted <- got{err: fmt.Errorf("read after %q: %w", buf, err)}
				return
			}
			buf = buf[:len(buf)+k]
			h, n, err := Parse(buf, Any)
			if errors.Is(err, ErrNeedMore) {
				continue
			}
			if err != nil {
				accepted <- got{err: fmt.Errorf("parse %q: %w", buf, err)}
				return
			}
			h = h.Clone()
			rest := append([]byte(nil), buf[n:]...)
			for len(rest) < len("hello") {
				k, err := c.Read(buf[:cap(buf)])
				if err != nil {
					accepted <- got{err: err}
					return
				}
				rest = append(rest, buf[:k]...)
			}
			c.Write([]byte("ok"))
			accepted <- got{h: h, payload: string(rest)}
			return
		}
	}
	roundTrip := func(t *testing.T, front *net.TCPListener, prefix []byte) (got, netip.AddrPort) {
		t.Helper()
		go serveOne()
		c, err := net.DialTimeout("tcp", front.Addr().String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(append(prefix, "hello"...)); err != nil {
			t.Fatal(err)
		}
		reply, _ := io.ReadAll(io.LimitReader(c, 2))
		var g got
		select {
		case g = <-accepted:
		case err := <-exited:
			t.Fatalf("haproxy exited: %v\n%s", err, stderr.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("backend saw nothing; haproxy output:\n%s", stderr.String())
		}
		if g.err != nil {
			t.Fatalf("backend: %v\nhaproxy output:\n%s", g.err, stderr.String())
		}
		if g.payload != "hello" || string(reply) != "ok" {
			t.Fatalf("payload %q reply %q", g.payload, reply)
		}
		return g, c.LocalAddr().(*net.TCPAddr).AddrPort()
	}
	frontAddr := func(i int) netip.AddrPort { return fronts[i].Addr().(*net.TCPAddr).AddrPort() }

	t.Run("send-proxy", func(t *testing.T) {
		g, client := roundTrip(t, fronts[0], nil)
		if g.h.Version != V1 || g.h.Src != client || g.h.Dst != frontAddr(0) {
			t.Fatalf("header %+v, want v1 %v -> %v", g.h, client, frontAddr(0))
		}
	})
	t.Run("send-proxy-v2", func(t *testing.T) {
		g, client := roundTrip(t, fronts[1], nil)
		if g.h.Version != V2 || g.h.Command != Proxy || g.h.Src != client || g.h.Dst != frontAddr(1) {
			t.Fatalf("header %+v, want v2 %v -> %v", g.h, client, frontAddr(1))
		}
		if id, ok := g.h.TLV(TypeUniqueID); !ok || string(id) != "relayd-uid-42" {
			t.Fatalf("unique-id TLV %q %v in %x", id, ok, g.h.TLVs)
		}
	})
	claimedSrc, claimedDst := netip.MustParseAddrPort("192.0.2.55:4242"), netip.MustParseAddrPort("198.51.100.7:443")
	t.Run("AppendV1 to accept-proxy", func(t *testing.T) {
		g, _ := roundTrip(t, fronts[2], AppendV1(nil, claimedSrc, claimedDst))
		if g.h.Version != V1 || g.h.Src != claimedSrc || g.h.Dst != claimedDst {
			t.Fatalf("haproxy relayed %+v, want %v -> %v", g.h, claimedSrc, claimedDst)
		}
	})
	t.Run("AppendV2 to accept-proxy", func(t *testing.T) {
		src6, dst6 := netip.MustParseAddrPort("[2001:db8::55]:4242"), netip.MustParseAddrPort("[2001:db8::7]:443")
		hdr, err := AppendV2(nil, src6, dst6, TLV{TypeNoop, []byte("pad")})
		if err != nil {
			t.Fatal(err)
		}
		g, _ := roundTrip(t, fronts[3], hdr)
		if g.h.Version != V2 || g.h.Family != INET6 || g.h.Src != src6 || g.h.Dst != dst6 {
			t.Fatalf("haproxy relayed %+v, want %v -> %v", g.h, src6, dst6)
		}
	})
	t.Run("AppendV2 without addresses to accept-proxy", func(t *testing.T) {
		// No addresses: a LOCAL header, so HAProxy uses the real endpoints.
		hdr, err := AppendV2(nil, netip.AddrPort{}, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		g, client := roundTrip(t, fronts[2], hdr)
		if g.h.Version != V1 || g.h.Src != client || g.h.Dst != frontAddr(2) {
			t.Fatalf("haproxy relayed %+v, want real endpoints %v -> %v", g.h, client, frontAddr(2))
		}
	})
}

// lockedBuffer collects HAProxy's output, written by exec's copier goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer // mu guards b
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
