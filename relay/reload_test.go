package relay_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/policy"
	"github.com/relayd/relayd/relay"
)

// tagServer answers every connection with its tag and closes.
func tagServer(t *testing.T, tag string) *server {
	return newServer(t, func(c *net.TCPConn) { _, _ = c.Write([]byte(tag)) })
}

func readTag(t *testing.T, addr string) string {
	t.Helper()
	c := dial(t, addr)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// Reload support: Update swaps the upstream set for new sessions while an
// established session keeps its upstream; listeners can be removed and
// added while the server runs.
func TestUpdateRemoveAddListener(t *testing.T) {
	a, b := tagServer(t, "A"), tagServer(t, "B")
	held := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(held) }) }
	hold := newServer(t, func(c *net.TCPConn) { _, _ = c.Write([]byte("H")); <-held; _, _ = c.Write([]byte("h")) })
	f := startRelay(t, []string{hold.Addr()}, nil)
	t.Cleanup(release) // LIFO: before the fd check and the servers' wait
	long := dial(t, f.addr)
	one := make([]byte, 1)
	if _, err := io.ReadFull(long, one); err != nil || one[0] != 'H' {
		t.Fatalf("long session: %q %v", one, err)
	}
	up := func(s string) []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort(s)} }
	if err := f.srv.Update(relay.ListenerConfig{Name: "test", Upstreams: up(a.Addr())}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := readTag(t, f.addr); got != "A" {
			t.Fatalf("after update to A got %q", got)
		}
	}
	if err := f.srv.Update(relay.ListenerConfig{Name: "test", Upstreams: up(b.Addr())}); err != nil {
		t.Fatal(err)
	}
	if got := readTag(t, f.addr); got != "B" {
		t.Fatalf("after update to B got %q", got)
	}
	// The session established before both updates still talks to its upstream.
	release()
	if _, err := io.ReadFull(long, one); err != nil || one[0] != 'h' {
		t.Fatalf("long session after updates: %q %v", one, err)
	}
	// A second listener added at run time, then the first removed.
	addr2, err := f.srv.AddListener(relay.ListenerConfig{Name: "second", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: up(a.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	if got := readTag(t, addr2.String()); got != "A" {
		t.Fatalf("added listener got %q", got)
	}
	if err := f.srv.RemoveListener("test"); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", f.addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("removed listener still accepts")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("removed listener: %v, want ECONNREFUSED", err)
	}
	long.Close()
	st := waitClosed(t, f.srv, 6)
	if ls := st.Listeners["test"]; ls.Accepted != 5 || ls.Closed["eof"]+ls.Closed["reset"] != 5 {
		t.Fatalf("listener test stats %+v", ls)
	}
	if ls := st.Listeners["second"]; ls.Accepted != 1 {
		t.Fatalf("listener second stats %+v", ls)
	}
}

// A reload can change a listener's edge settings: new sessions follow the
// new ACL, established ones keep theirs, and the refusal counters carry on.
func TestUpdateEdgeSettings(t *testing.T) {
	a := tagServer(t, "A")
	f := startRelay(t, []string{a.Addr()}, nil)
	if got := readTag(t, f.addr); got != "A" {
		t.Fatalf("before: %q", got)
	}
	acl, err := policy.NewSourceACL(nil, []string{"127.0.0.1/32"})
	if err != nil {
		t.Fatal(err)
	}
	up := []netip.AddrPort{netip.MustParseAddrPort(a.Addr())}
	if err := f.srv.Update(relay.ListenerConfig{Name: "test", Upstreams: up, ACL: acl}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
		if err != nil {
			if !errors.Is(err, syscall.ECONNRESET) { // the reset may beat the handshake's end
				t.Fatal(err)
			}
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Fatalf("denied source got %q", b)
		}
		c.Close()
	}
	if err := f.srv.Update(relay.ListenerConfig{Name: "test", Upstreams: up}); err != nil {
		t.Fatal(err)
	}
	if got := readTag(t, f.addr); got != "A" {
		t.Fatalf("after lifting the ACL: %q", got)
	}
	st := waitClosed(t, f.srv, 4)
	if st.Closed["rejected_acl"] != 2 {
		t.Fatalf("closed %v, want 2 rejected_acl", st.Closed)
	}
	if n := f.srv.EdgeStats()["test"].SourceRejected; total(n) != 2 {
		t.Fatalf("edge counters %v after two reloads, want 2 refusals kept", n)
	}
}

func total(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}
