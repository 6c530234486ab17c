//go:build linux

package connector

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/testnet"
)

// fdCount is the number of open fds of the test process.
func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// echoServer accepts on 127.0.0.1 (or ::1), answers each connection's first
// byte with the same byte and closes it once the client has closed.
type echoServer struct {
	*testnet.Server
	addr netip.AddrPort
}

func newEchoServer(t testing.TB, network, addr string) *echoServer {
	t.Helper()
	s := testnet.Serve(t, network, addr, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err == nil {
			_, _ = c.Write(b[:])
		}
		// Close only after the client has: TIME_WAIT then stays on
		// the client side, where port selection accounts for it. A
		// server-side TIME_WAIT tuple that a new SYN happens to hit
		// is rejected by PAWS and costs that connect a 1s retransmit.
		_, _ = io.Copy(io.Discard, c)
	})
	return &echoServer{Server: s, addr: s.AddrPort()}
}

func refusedAddr(t testing.TB) netip.AddrPort { return testnet.RefusedAddr(t) }

func sockname(t testing.TB, fd int) netip.AddrPort {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	sa4 := sa.(*unix.SockaddrInet4)
	return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(sa4.Port))
}

func hangingAddr(t testing.TB) netip.AddrPort { return testnet.HangingAddr(t) }

func hangingListener(t testing.TB) (int, netip.AddrPort) { return testnet.HangingListener(t) }

// establishedTo counts client-side TCP sockets of this network namespace in
// ESTABLISHED state whose peer is ap (IPv4), from /proc/net/tcp.
func establishedTo(t testing.TB, ap netip.AddrPort) int {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	a := ap.Addr().As4()
	// /proc/net/tcp prints the address as a little-endian hex word.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[2] == want && f[3] == "01" {
			n++
		}
	}
	return n
}

// fillFDHoles opens /dev/null until the lowest free fd number is above every
// open one, so the next socket() returns a predictable number and a number
// closed later is the one the kernel hands out next.
func fillFDHoles(t testing.TB) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	top := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > top {
			top = n
		}
	}
	for i := 0; i < 100000; i++ {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fd > top {
			unix.Close(fd) // the first free number above all open ones
			return
		}
		t.Cleanup(func() { unix.Close(fd) })
	}
	t.Fatal("could not fill fd holes")
}

// recorder is a Handler that checks "exactly once" per Cookie and passes
// results on without ever blocking the worker.
type recorder struct {
	calls []atomic.Int32
	extra atomic.Int32 // calls that found ch full: a handler called too often
	ch    chan *Request
}

func newRecorder(n int) *recorder {
	return &recorder{calls: make([]atomic.Int32, n), ch: make(chan *Request, n)}
}

func (h *recorder) Connected(r *Request) {
	h.calls[r.Cookie].Add(1)
	select {
	case h.ch <- r:
	default:
		h.extra.Add(1)
	}
}

// wait receives n results, failing after d.
func (h *recorder) wait(t testing.TB, n int, d time.Duration) []*Request {
	t.Helper()
	out := make([]*Request, 0, n)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for len(out) < n {
		select {
		case r := <-h.ch:
			out = append(out, r)
		case <-deadline.C:
			t.Fatalf("got %d of %d results within %v", len(out), n, d)
		}
	}
	return out
}

// checkOnce asserts every cookie < n got exactly one call.
func (h *recorder) checkOnce(t testing.TB, n int) {
	t.Helper()
	if e := h.extra.Load(); e != 0 {
		t.Errorf("%d surplus handler calls", e)
	}
	for i := 0; i < n; i++ {
		if c := h.calls[i].Load(); c != 1 {
			t.Errorf("request %d: handler called %d times", i, c)
		}
	}
}

// eventually polls cond until it holds or d passes. It waits for a state
// the test cannot be told about (a worker has taken requests in flight).
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func sum[T int | uint64](xs []T) T {
	var n T
	for _, x := range xs {
		n += x
	}
	return n
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// roundTrip writes one byte through fd and reads the echo, waiting at most
// 10 s. The fd stays non-blocking and every wait is poll(2) with EINTR
// retried. The earlier version switched the fd to blocking with SO_RCVTIMEO,
// and a blocking socket call with a timeout is never restarted after a
// signal handler (signal(7)): the Go runtime's preemption signal, which a
// loaded machine sends far more often, turned into "interrupted system call".
func roundTrip(fd int, b byte) error {
	deadline := time.Now().Add(10 * time.Second)
	wait := func(ev int16) error {
		for {
			ms := int(time.Until(deadline) / time.Millisecond)
			if ms <= 0 {
				return fmt.Errorf("no echo within 10 s (poll for %#x)", ev)
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: ev}}
			if _, err := unix.Poll(pfd, ms); err != nil && err != unix.EINTR {
				return err
			}
			if pfd[0].Revents != 0 {
				return nil
			}
		}
	}
	for {
		_, err := unix.Write(fd, []byte{b})
		if err == nil {
			break
		}
		if err != unix.EINTR && err != unix.EAGAIN {
			return err
		}
		if err := wait(unix.POLLOUT); err != nil {
			return err
		}
	}
	var got [1]byte
	for {
		n, err := unix.Read(fd, got[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := wait(unix.POLLIN); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		case n != 1 || got[0] != b:
			return errors.New("echo mismatch")
		}
		return nil
	}
}

// closeLeft closes, at the end of the test, the fds of results the test did
// not get to (it stopped at a failure): the echo server's Close waits for
// its handlers, which wait for their clients, and 2,000 open clients would
// hold a failing test for the handlers' 20 s deadline.
func closeLeft(t testing.TB, results []*Request) {
	t.Cleanup(func() {
		for _, r := range results {
			if r.FD >= 0 {
				unix.Close(r.FD)
				r.FD = -1
			}
		}
	})
}
