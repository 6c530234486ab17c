//go:build linux

package relay_test

import (
	"errors"
	"io"
	"net"
	"sort"
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
// succeeds through the second and the refusals are counted.
func TestRefusedThenGoodUpstream(t *testing.T) {
	const n = 50
	refused := testnet.RefusedAddr(t).String()
	up := newServer(t, echo)
	f := startRelay(t, []string{refused, up.Addr()}, func(_ *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) {
		lc.Tries = 2
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

// Acceptance 5: the upstream's accept queue is full: the session is closed
// after connect_timeout (±20%), counted as connect_timeout, and no more than
// max_inflight connects are ever in flight.
func TestConnectTimeout(t *testing.T) {
	const timeout, sessions, inflight = 500 * time.Millisecond, 6, 2
	up := testnet.HangingAddr(t)
	f := startRelay(t, []string{up.String()}, func(_ *relay.Config, cc *connector.Config, _ *relay.ListenerConfig) {
		cc.Workers, cc.MaxInflight, cc.ConnectTimeout = 1, inflight, timeout
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
	var ds []time.Duration
	for range sessions {
		r := <-results
		if r.err == nil {
			t.Fatal("got data from a session that cannot connect")
		}
		if !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, io.EOF) {
			t.Fatalf("session ended with %v", r.err)
		}
		ds = append(ds, r.d)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	// With 2 in flight, sessions finish in waves of 2 at 1×, 2×, 3× the
	// timeout. The first wave measures connect_timeout itself.
	if first := ds[0]; first < timeout*8/10 || first > timeout*12/10+100*time.Millisecond+slack {
		t.Fatalf("first sessions closed after %v, want %v ±20%% (+100 ms, +%v machine lateness)", first, timeout, slack)
	}
	if last := ds[sessions-1]; last < timeout*sessions/inflight*8/10 {
		t.Fatalf("last session closed after %v: more than %d connects ran at once", last, inflight)
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
