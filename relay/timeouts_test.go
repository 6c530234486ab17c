//go:build linux

package relay_test

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/internal/testnet"
	"github.com/relayd/relayd/relay"
)

// clientClosed waits until the relay closes c (EOF or reset) and returns
// how long that took.
func clientClosed(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	_ = c.SetReadDeadline(t0.Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("session still open after %v", within)
	}
	return time.Since(t0)
}

// Acceptance 7: an idle session is closed after idle_timeout and its fds
// freed (the fixture's cleanup checks fds).
func TestIdleTimeout(t *testing.T) {
	up := newServer(t, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) })
	f := startRelay(t, []string{up.Addr()}, func(rc *relay.Config, _ *connector.Config, _ *relay.ListenerConfig) {
		rc.IdleTimeout = 300 * time.Millisecond
	})
	c := dial(t, f.addr)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if d := clientClosed(t, c, 10*time.Second); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
	if st := waitClosed(t, f.srv, 1); st.Closed["idle_timeout"] != 1 {
		t.Fatalf("closed %v", st.Closed)
	}
}

// That a session that moves data is not idle, however long it lives, is
// tested with an injected clock (TestIdleTimeoutInjectedClock): exact, where
// a real-time version depends on the machine's scheduling.

// Acceptance 7: a half-closed session whose other side goes quiet is closed
// after fin_timeout, counted as such.
func TestFinTimeout(t *testing.T) {
	quit := make(chan struct{})
	up := newServer(t, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c); <-quit })
	f := startRelay(t, []string{up.Addr()}, func(rc *relay.Config, _ *connector.Config, _ *relay.ListenerConfig) {
		rc.FinTimeout = 300 * time.Millisecond
	})
	t.Cleanup(func() { close(quit) }) // LIFO: before the fd check and the server's wait for handlers
	c := dial(t, f.addr)
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite() // the upstream never answers nor closes
	if d := clientClosed(t, c, 10*time.Second); d < 250*time.Millisecond || d > 4*time.Second {
		t.Fatalf("closed after %v, want about the fin timeout", d)
	}
	if st := waitClosed(t, f.srv, 1); st.Closed["fin_timeout"] != 1 {
		t.Fatalf("closed %v", st.Closed)
	}
}

// Acceptance 6: a refused upstream first, a good one second: every session
// succeeds through the second and the refusals are counted. Passive health
// is off here (the refusals would take the upstream down after 3;
// TestPassiveHealth covers that).
func TestRefusedThenGoodUpstream(t *testing.T) {
	const n = 50
	refused := testnet.RefusedAddr(t).String()
	up := newServer(t, echo)
	f := startRelay(t, []string{refused, up.Addr()}, func(_ *relay.Config, cc *connector.Config, lc *relay.ListenerConfig) {
		lc.Tries = 2
		cc.FailAfter = -1
	})
	for i := range n {
		c := dial(t, f.addr)
		msg := []byte{byte(i), 'x', 'y'}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 3)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
			t.Fatalf("session %d: %q %v", i, got, err)
		}
		c.Close()
	}
	st := waitClosed(t, f.srv, n)
	if st.Closed["eof"] != n || st.Closed["refused"] != 0 {
		t.Fatalf("closed %v", st.Closed)
	}
	// Round-robin starts half the sessions on the good upstream; the other
	// half are refused once each and fail over.
	if ps := f.pool.Stats(); ps.Failures[connector.ClassRefused] != n/2 {
		t.Fatalf("refusals counted %d, want %d (stats %+v)", ps.Failures[connector.ClassRefused], n/2, ps)
	}
}

// Acceptance 5: the upstream's accept queue is full: every session is
// closed after connect_timeout (±20%) — the wait for a connect slot counts
// against it, so sessions queued behind the hanging connects close at the
// same time rather than in waves — counted as connect_timeout, and no more
// than max_inflight connects are ever in flight.
func TestConnectTimeout(t *testing.T) {
	const timeout, sessions, inflight = 500 * time.Millisecond, 6, 2
	up := testnet.HangingAddr(t)
	f := startRelay(t, []string{up.String()}, func(_ *relay.Config, cc *connector.Config, _ *relay.ListenerConfig) {
		cc.Workers, cc.MaxInflight, cc.ConnectTimeout = 1, inflight, timeout
		cc.FailAfter = -1 // passive health would fail the later ones fast (TestUpstreamsDownReason)
	})
	type res struct {
		d   time.Duration
		err error
	}
	results := make(chan res, sessions)
	// A plain Go timer started with the sessions measures how late this
	// (possibly loaded) machine runs anything; that lateness is allowed on
	// top of the bound, as in the connector's own test.
	start := time.Now()
	control := time.NewTimer(timeout)
	for range sessions {
		c := dial(t, f.addr)
		go func() {
			t0 := time.Now()
			_ = c.SetReadDeadline(t0.Add(20 * time.Second))
			_, err := c.Read(make([]byte, 1))
			results <- res{time.Since(t0), err}
		}()
	}
	<-control.C
	slack := max(time.Since(start)-timeout, 0)
	for range sessions {
		r := <-results
		if r.err == nil {
			t.Fatal("got data from a session that cannot connect")
		}
		if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, io.EOF) {
			t.Fatalf("session ended with %v", r.err)
		}
		if r.d < timeout*8/10 || r.d > timeout*12/10+100*time.Millisecond+slack {
			t.Fatalf("a session closed after %v, want %v ±20%% (+100 ms, +%v machine lateness)", r.d, timeout, slack)
		}
	}
	st := waitClosed(t, f.srv, sessions)
	if st.Closed["connect_timeout"] != sessions {
		t.Fatalf("closed %v", st.Closed)
	}
	ps := f.pool.Stats()
	for w, hw := range ps.InflightHighWater {
		if hw > inflight {
			t.Fatalf("worker %d had %d connects in flight, max %d", w, hw, inflight)
		}
	}
	if ps.Failures[connector.ClassTimeout] != sessions {
		t.Fatalf("timeouts counted %d, want %d", ps.Failures[connector.ClassTimeout], sessions)
	}
}

// Passive health through the relay: the only upstream refuses once and is
// marked down (fail_after 1); the next client is closed at once under its
// own reason, without a connect attempt, and the listener's upstream
// reports down.
func TestUpstreamsDownReason(t *testing.T) {
	refused := testnet.RefusedAddr(t).String()
	f := startRelay(t, []string{refused}, func(_ *relay.Config, cc *connector.Config, _ *relay.ListenerConfig) {
		cc.FailAfter, cc.Backoff, cc.BackoffMax = 1, time.Hour, time.Hour
	})
	for i := range 2 {
		// The rejected client is reset at once, possibly before its dial
		// returns.
		c, err := net.DialTimeout("tcp", f.addr, 10*time.Second)
		if errors.Is(err, syscall.ECONNRESET) {
			waitClosed(t, f.srv, uint64(i+1))
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("session %d got data", i)
		}
		c.Close()
		waitClosed(t, f.srv, uint64(i+1))
	}
	st := f.srv.Stats()
	if st.Closed["refused"] != 1 || st.Closed["upstreams_down"] != 1 {
		t.Fatalf("closed %v", st.Closed)
	}
	ps := f.pool.Stats()
	if ps.Attempts != 1 || ps.DownRejected != 1 {
		t.Fatalf("attempts %d, down rejections %d", ps.Attempts, ps.DownRejected)
	}
	us := f.pool.UpstreamStats()
	if len(us) != 1 || us[0].Up || us[0].Listener != "test" || us[0].Addr.String() != refused || us[0].Transitions != 1 {
		t.Fatalf("upstream stats %+v", us)
	}
}
