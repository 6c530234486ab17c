//go:build linux

package relay

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/internal/testnet"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// injected is a relay whose loops run on a fake clock, so the session timers
// fire when the test moves the clock and ticks, never because the machine
// was slow: the deadlines are exact, whatever the load.
type injected struct {
	srv   *Server
	clock *fakeClock
	addr  string
}

func startInjected(t *testing.T, ups []netip.AddrPort, mod func(*Config, *ListenerConfig)) *injected {
	t.Helper()
	pool, err := connector.New(connector.Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	fc := &fakeClock{t: time.Now()}
	cfg := Config{Loops: 2, Dialer: pool, Reuseport: true, Clock: fc.Now}
	lc := ListenerConfig{Name: "t", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: ups}
	if mod != nil {
		mod(&cfg, &lc)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.AddListener(lc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &injected{srv: srv, clock: fc, addr: addr.String()}
}

// advance moves the clock by d and runs one tick on every loop, returning
// once every loop has run it: the timers due by then have fired.
func (in *injected) advance(t *testing.T, d time.Duration) {
	t.Helper()
	in.clock.mu.Lock()
	in.clock.t = in.clock.t.Add(d)
	in.clock.mu.Unlock()
	for _, l := range in.srv.loops {
		done := make(chan struct{})
		if err := l.ev.Post(func(any) { l.ev.Tick(); close(done) }, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a loop did not run its tick")
		}
	}
}

func (in *injected) active() int64 { return in.srv.Stats().Active }

func echoUpstream(t *testing.T) netip.AddrPort {
	return testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) { _, _ = io.Copy(c, c) }).AddrPort()
}

// closedNow reads c until the relay's close reaches it (bounded: the close
// itself has happened already).
func closedNow(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the relay did not close the session")
		}
	}
}

// The idle timeout counts from the last byte either way: traffic every
// 4m59s keeps a session with the default 5 min idle timeout open through
// any number of periods; 5 min of silence closes it, at that tick exactly.
func TestIdleTimeoutInjectedClock(t *testing.T) {
	in := startInjected(t, []netip.AddrPort{echoUpstream(t)}, nil) // IdleTimeout: the 5 min default
	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		if err := testnet.RoundTrip(c, "ping"); err != nil {
			t.Fatalf("period %d: %v", i, err)
		}
		in.advance(t, 5*time.Minute-time.Second)
		if in.active() != 1 {
			t.Fatalf("period %d: closed after 4m59s of silence", i)
		}
	}
	in.advance(t, time.Second) // 5 min since the last ping
	if in.active() != 0 {
		t.Fatal("open after 5 min of silence")
	}
	closedNow(t, c)
	if st := in.srv.Stats(); st.Closed["idle_timeout"] != 1 {
		t.Fatalf("closed %v", st.Closed)
	}
}

// The fin timeout replaces the idle timeout once one direction is done: a
// half-closed session whose other side goes quiet lives 30 s (the default),
// not 5 min.
func TestFinTimeoutInjectedClock(t *testing.T) {
	quit := make(chan struct{})
	up := testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) { _, _ = io.Copy(io.Discard, c); <-quit })
	in := startInjected(t, []netip.AddrPort{up.AddrPort()}, nil)
	t.Cleanup(func() { close(quit) })
	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	// The relay has forwarded the FIN once its up direction is shut: wait
	// for that state (bounded) before the clock moves.
	waitCond(t, "the client's FIN to reach the upstream", func() bool { return halfClosed(in.srv) > 0 })
	in.advance(t, 29*time.Second)
	if in.active() != 1 {
		t.Fatal("closed 29 s into the fin timeout")
	}
	in.advance(t, time.Second)
	if in.active() != 0 {
		t.Fatal("open 30 s after the half-close")
	}
	closedNow(t, c)
	if st := in.srv.Stats(); st.Closed["fin_timeout"] != 1 {
		t.Fatalf("closed %v", st.Closed)
	}
}

// halfClosed counts the sessions with one direction finished, from the
// loops themselves (a task on each).
func halfClosed(s *Server) int {
	n := 0
	for _, l := range s.loops {
		done := make(chan int, 1)
		if l.ev.Post(func(any) {
			k := 0
			for ss := l.sessions.first(); ss != nil; ss = ss.next {
				if ss == &l.sessions.head {
					break
				}
				if !ss.halfAt.IsZero() {
					k++
				}
			}
			done <- k
		}, nil) != nil {
			continue
		}
		n += <-done
	}
	return n
}

// The handshake timeout bounds the whole handshake, not its inactivity: a
// SOCKS5 client that sent one byte is closed 10 s (the default) after it
// connected.
func TestHandshakeTimeoutInjectedClock(t *testing.T) {
	in := startInjected(t, nil, func(_ *Config, lc *ListenerConfig) { lc.Mode = ModeSOCKS5 })
	c, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{5}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "the session", func() bool { return in.active() == 1 })
	in.advance(t, 10*time.Second-10*time.Millisecond)
	if in.active() != 1 {
		t.Fatal("closed before the handshake timeout")
	}
	in.advance(t, 10*time.Millisecond)
	if in.active() != 0 {
		t.Fatal("open after the handshake timeout")
	}
	closedNow(t, c)
	if st := in.srv.Stats(); st.Closed["handshake_timeout"] != 1 {
		t.Fatalf("closed %v", st.Closed)
	}
}

// waitCond polls cond until it holds, failing the test after 10 s: a wait
// on a state with a bound, never a sleep standing in for one.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // the poll interval of a bounded wait
	}
}
