//go:build linux

package relay

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
)

// Review C10: stopping a listener (drain) first accepts what already waits
// in its accept queue; shutdown on a listening socket would reset those
// clients, who had completed their handshake. The loops are not running, so
// the clients below sit in the queue until closeLsock runs (the RST of a
// shutdown is delivered synchronously on loopback).
func TestStopAcceptsQueuedConnections(t *testing.T) {
	pool, err := connector.New(connector.Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	srv, err := New(Config{Loops: 1, Dialer: pool, Reuseport: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	up := netip.MustParseAddrPort("127.0.0.1:9")
	addr, err := srv.AddListener(ListenerConfig{Name: "a", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: []netip.AddrPort{up}})
	if err != nil {
		t.Fatal(err)
	}
	var clients []net.Conn
	for range 5 {
		c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	l := srv.loops[0]
	ls := srv.listeners[0].socks[0]
	if err := l.addListener(ls); err != nil {
		t.Fatal(err)
	}
	l.closeLsock(ls, true)
	if got := l.st.accepted.Load(); got != 5 {
		t.Fatalf("%d queued connections accepted before the stop, want 5", got)
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now())
		_, err := c.Read(make([]byte, 1))
		if errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client %d was reset by the stop", i)
		}
	}
}

// Review C11: the network errors accept(2) says to retry like EAGAIN do not
// pause the listener; resource errors still do.
func TestRetryAccept(t *testing.T) {
	for _, e := range []syscall.Errno{syscall.EINTR, syscall.ECONNABORTED, syscall.EPROTO, syscall.ENOPROTOOPT, syscall.ENETDOWN,
		syscall.EHOSTDOWN, syscall.ENONET, syscall.EHOSTUNREACH, syscall.EOPNOTSUPP, syscall.ENETUNREACH} {
		if !retryAccept(e) {
			t.Errorf("%v pauses the listener; accept(2) says retry", e)
		}
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EINVAL} {
		if retryAccept(e) {
			t.Errorf("%v is retried at once; it must back off", e)
		}
	}
}
