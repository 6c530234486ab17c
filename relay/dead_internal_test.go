//go:build linux

package relay

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/connector"
)

// eventpollFDs lists this process's epoll fds.
func eventpollFDs(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.Contains(l, "eventpoll") {
			n, _ := strconv.Atoi(e.Name())
			out[n] = true
		}
	}
	return out
}

// Review C9: a relay loop whose poller fails is reported on Dead (the daemon
// exits 1 on it) instead of only being logged while its sessions and its
// share of the listening sockets are silently orphaned.
func TestDeadLoopIsReported(t *testing.T) {
	pool, err := connector.New(connector.Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	before := eventpollFDs(t)
	srv, err := New(Config{Loops: 2, Dialer: pool, Reuseport: true})
	if err != nil {
		t.Fatal(err)
	}
	var victim = -1
	for fd := range eventpollFDs(t) {
		if !before[fd] {
			victim = fd
			break
		}
	}
	if victim < 0 {
		t.Fatal("no epoll fd of the relay's loops found")
	}
	if _, err := srv.AddListener(ListenerConfig{Name: "a", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	select {
	case err := <-srv.Dead():
		t.Fatalf("a healthy server reported a dead loop: %v", err)
	default:
	}
	// Put /dev/null where one loop's epoll fd was: its next epoll_wait
	// fails with EINVAL. A task on every loop (a new listener) wakes it.
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	if err := unix.Dup3(null, victim, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	_, _ = srv.AddListener(ListenerConfig{Name: "b", Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}})
	select {
	case err := <-srv.Dead():
		t.Logf("reported: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a dead loop was not reported")
	}
}
