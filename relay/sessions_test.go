//go:build linux

package relay_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/relayd/relayd/relay"
)

// Sessions lists exactly the open sessions a query selects, over both
// loops; CloseSessions resets exactly the ones it selects (one by ID, then
// a client prefix), whose clients see the connection end while the others
// keep relaying, each counted as admin_closed. An empty close is refused.
func TestCloseSessions(t *testing.T) {
	up := newServer(t, echo)
	f := startRelay(t, []string{up.Addr()}, nil)
	from := func(src string) *net.TCPConn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.TCPConn)
	}
	echoed := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
			return errors.Join(err, errors.New("no echo"))
		}
		return nil
	}
	var ones, twos []*net.TCPConn
	for range 6 {
		ones, twos = append(ones, from("127.0.0.1")), append(twos, from("127.0.0.2"))
	}
	for _, c := range append(append([]*net.TCPConn{}, ones...), twos...) {
		if err := echoed(c); err != nil { // relaying: connected, bytes counted
			t.Fatal(err)
		}
	}
	two := netip.MustParsePrefix("127.0.0.2/32")
	p := f.srv.Sessions(relay.SessionQuery{ClientPrefix: two, Limit: 100})
	if p.Total != 6 || len(p.Sessions) != 6 {
		t.Fatalf("sessions from 127.0.0.2: %d listed, total %d", len(p.Sessions), p.Total)
	}
	for _, s := range p.Sessions {
		if s.Client.Addr() != two.Addr() || s.State != "relaying" || s.BytesUp != 4 || s.BytesDown != 4 || s.Listener != "test" {
			t.Fatalf("session %+v", s)
		}
	}
	if all := f.srv.Sessions(relay.SessionQuery{}); all.Total != 12 {
		t.Fatalf("all sessions: total %d", all.Total)
	}

	if _, err := f.srv.CloseSessions(relay.SessionQuery{Limit: 5}); !errors.Is(err, relay.ErrEmptyQuery) {
		t.Fatalf("close with no filter: %v", err)
	}
	first := p.Sessions[0]
	if n, err := f.srv.CloseSessions(relay.SessionQuery{ID: first.ID}); n != 1 || err != nil {
		t.Fatalf("close by ID: %d %v", n, err)
	}
	if n, _ := f.srv.CloseSessions(relay.SessionQuery{ID: first.ID}); n != 0 {
		t.Fatalf("close of a closed ID: %d", n)
	}
	if n, err := f.srv.CloseSessions(relay.SessionQuery{ClientPrefix: two}); n != 5 || err != nil {
		t.Fatalf("close by client: %d %v", n, err)
	}
	for _, c := range twos {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a closed session's client read %d, %v", n, err)
		}
	}
	for _, c := range ones {
		if err := echoed(c); err != nil {
			t.Fatalf("a session left open: %v", err)
		}
	}
	st := f.srv.Stats()
	if st.Closed["admin_closed"] != 6 || st.Active != 6 || st.Listeners["test"].Closed["admin_closed"] != 6 {
		t.Fatalf("after the closes: %d admin_closed, %d active", st.Closed["admin_closed"], st.Active)
	}
}
