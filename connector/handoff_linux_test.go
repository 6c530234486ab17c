//go:build linux

package connector

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A socket handed off connected stays in the worker's epoll set (its
// one-shot registration fired and is disarmed) until its owner closes it.
// It must report nothing more there: a registration still armed for
// EPOLLOUT would wake the worker, level-triggered, for as long as the
// owner keeps the socket. Read from the kernel's own account of every
// epoll set of the process (/proc/self/fdinfo): each of 20 handed-off
// sockets, kept open by the test, is either absent or registered with no
// event armed.
func TestHandedOffSocketsLeaveTheWorkerQuiet(t *testing.T) {
	const n = 20
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{Workers: 1})
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{srv.addr}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	results := h.wait(t, n, 30*time.Second)
	defer closeLeft(t, results)
	handed := map[int]bool{}
	for _, r := range results {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		handed[r.FD] = true
	}
	armed := epollRegistrations(t)
	for fd := range handed {
		if ev, ok := armed[fd]; ok && ev&(unix.EPOLLOUT|unix.EPOLLIN) != 0 {
			t.Errorf("handed-off fd %d is still armed in an epoll set: events %#x", fd, ev)
		}
	}
}

// epollRegistrations returns, for every fd registered in any epoll set of
// this process, its armed event mask (from /proc/self/fdinfo).
func epollRegistrations(t *testing.T) map[int]uint64 {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]uint64{}
	for _, e := range ents {
		if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); link != "anon_inode:[eventpoll]" {
			continue
		}
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			var fd int
			var ev uint64
			if n, _ := fmt.Sscanf(line, "tfd: %d events: %x", &fd, &ev); n == 2 {
				out[fd] = ev
			}
		}
	}
	return out
}
