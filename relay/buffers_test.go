//go:build linux

package relay_test

import (
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/testnet"
	"github.com/relayd/relayd/relay"
)

// The dir invariant, from outside: an idle SOCKS5 tunnel whose client waited
// for the reply before sending (every real client) holds no relay buffer;
// under backpressure each holds exactly one, and once drained none again,
// with pauses and resumes paired. Before the fix every such tunnel kept its
// handshake buffer for life and the first partial write overwrote it.
// Splicing is off: a spliced direction holds a pipe, not a buffer
// (TestSpliceBackpressureBound).
func TestIdleEdgeTunnelsHoldNoBuffer(t *testing.T) {
	const n = 100
	var (
		release = make(chan struct{})
		mu      sync.Mutex
		got     = map[string]int64{} // upstream bytes by client tag
		wg      sync.WaitGroup
	)
	wg.Add(n)
	up := newServer(t, func(c *net.TCPConn) {
		defer wg.Done()
		var tag [8]byte
		if _, err := io.ReadFull(c, tag[:]); err != nil {
			return
		}
		<-release
		m, _ := io.Copy(io.Discard, c)
		mu.Lock()
		got[string(tag[:])] = m + 8
		mu.Unlock()
	})
	f := edgeRelayRC(t, relay.ModeSOCKS5, port(t, up.Addr()), func(rc *relay.Config) { rc.Splice = relay.SpliceOff }, nil)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs first: a failure below must not leave the handlers waiting (the server's Close waits for them)
	req := socksReq("", netip.MustParseAddrPort(up.Addr()), 0)
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		c := dial(t, f.addr)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if rep := socksReply(t, c); rep != 0 {
			t.Fatalf("session %d: REP %d", i, rep)
		}
		conns[i] = c
	}
	// The reply is written by the loop task that enters relaying, so by now
	// every session's buffers are settled.
	if st := f.srv.Stats(); st.Active != n || st.BufsHeld != 0 {
		t.Fatalf("%d idle tunnels: %d active, %d buffers held, want 0", n, st.Active, st.BufsHeld)
	}

	// Backpressure on each: push until every session holds its one buffer.
	var stop atomic.Bool
	sent := make([]int64, n)
	var pushers sync.WaitGroup
	for i, c := range conns {
		pushers.Add(1)
		go func() {
			defer pushers.Done()
			tag := []byte(strconv.Itoa(10000000 + i))
			w, _ := c.Write(tag)
			sent[i] = int64(w)
			chunk := make([]byte, 64<<10)
			for !stop.Load() {
				w, err := c.Write(chunk)
				sent[i] += int64(w)
				if err != nil {
					return
				}
			}
			_ = c.CloseWrite()
		}()
	}
	waitStat(t, f.srv, "every session paused with one buffer", func(st relay.Stats) bool { return st.BufsHeld == n })
	stop.Store(true)
	unblock()
	pushers.Wait()
	wg.Wait()
	for i := range conns {
		tag := strconv.Itoa(10000000 + i)
		if got[tag] != sent[i] {
			t.Errorf("session %d: upstream got %d bytes, client sent %d", i, got[tag], sent[i])
		}
	}
	st := waitStat(t, f.srv, "all closed", func(st relay.Stats) bool { return st.Active == 0 })
	if st.BufsHeld != 0 || st.Pauses < n || st.Pauses != st.Resumes {
		t.Fatalf("after drain: %d buffers held, %d pauses, %d resumes", st.BufsHeld, st.Pauses, st.Resumes)
	}
}

// A client that sent only a FIN before its upstream answered (a probe) holds
// no buffer once connected. The upstream's accept queue is full, so the
// connect completes only after a SYN retransmit (≥ 1 s), long after the FIN
// was read.
func TestPreConnectProbeHoldsNoBuffer(t *testing.T) {
	lfd, hang := testnet.HangingListener(t)
	f := startRelay(t, []string{hang.String()}, nil)
	c := dial(t, f.addr)
	_ = c.CloseWrite()
	waitStat(t, f.srv, "probe session", func(st relay.Stats) bool { return st.Active == 1 })
	nfd, _, err := unix.Accept(lfd) // room for exactly one more connect
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(nfd)
	waitFor(t, "the upstream connect", func() bool { return f.pool.Stats().Connected == 1 })
	waitStat(t, f.srv, "no buffer held", func(st relay.Stats) bool { return st.BufsHeld == 0 })
}

// Review C3: the upstream stops reading (a write toward it fails with EPIPE)
// while its own response is still to come: the response must reach the
// client whole, with a clean FIN, and the client's later bytes are dropped.
// Before the fix the write error reset both sides at once.
func TestBrokenDirectionKeepsReverse(t *testing.T) {
	const respLen = 256 << 10
	gotQ, send := make(chan netip.AddrPort, 1), make(chan struct{})
	up := newServer(t, func(c *net.TCPConn) {
		var q [1]byte
		if _, err := io.ReadFull(c, q[:]); err != nil {
			return
		}
		gotQ <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
		<-send
		_, _ = io.Copy(c, randReader(3, respLen))
		// Close with whatever the relay sent meanwhile unread.
	})
	f := startRelay(t, []string{up.Addr()}, nil)
	c := dial(t, f.addr)
	if _, err := c.Write([]byte("Q")); err != nil {
		t.Fatal(err)
	}
	relayLocal := <-gotQ
	// The relay's upstream socket stops being writable for good, as after
	// the upstream's RST: shut its write side (writes now fail with EPIPE).
	fd := findSocket(t, relayLocal, netip.MustParseAddrPort(up.Addr()))
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("more request bytes")); err != nil {
		t.Fatal(err)
	}
	// Let the relay try to write them before any response exists.
	clientSide := findSocket(t, netip.MustParseAddrPort(f.addr), c.LocalAddr().(*net.TCPAddr).AddrPort())
	waitFor(t, "relay read the client's bytes", func() bool {
		n, err := unix.IoctlGetInt(clientSide, unix.SIOCINQ)
		return err != nil || n == 0
	})
	close(send)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	sum, n, err := sum(c)
	if err != nil || n != respLen || sum != mustSum(3, respLen) {
		t.Fatalf("response: %d of %d bytes, err %v, sum equal %v", n, respLen, err, sum == mustSum(3, respLen))
	}
	_ = c.CloseWrite()
	if st := waitClosed(t, f.srv, 1); st.Closed["reset"] != 1 {
		t.Fatalf("closed %v, want one reset (the upstream broke off)", st.Closed)
	}
}

// findSocket returns this process's fd of the TCP socket local → peer.
func findSocket(t testing.TB, local, peer netip.AddrPort) int {
	t.Helper()
	var found int
	waitFor(t, "socket "+local.String()+" → "+peer.String(), func() bool {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			ls, err1 := unix.Getsockname(fd)
			ps, err2 := unix.Getpeername(fd)
			if err1 == nil && err2 == nil && sockAddr(ls) == local && sockAddr(ps) == peer {
				found = fd
				return true
			}
		}
		return false
	})
	return found
}

func sockAddr(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// waitFor polls cond until it holds, failing after 10 s: for states the test
// cannot be told about.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Heap per stalled handshake: clients that sent one byte of a SOCKS5
// greeting and stopped hold a few bytes of unparsed input each, not a relay
// buffer. Raw sockets on the client side keep the test's own heap out of the
// measurement; a first round grows the loops' fd tables so the second
// measures sessions only.
func TestStalledHandshakesHeap(t *testing.T) {
	// In a process of its own: what other tests of this package leave
	// behind (servers winding down, pools) would otherwise move the heap
	// while it is measured.
	if os.Getenv("RELAYD_HEAP_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStalledHandshakesHeap$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "RELAYD_HEAP_CHILD=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil {
			t.Fatalf("the measurement failed: %v", err)
		}
		return
	}
	const n = 3000
	f := edgeRelay(t, relay.ModeSOCKS5, 9, func(lc *relay.ListenerConfig) { lc.HandshakeTimeout = time.Minute })
	dst := netip.MustParseAddrPort(f.addr)
	open := func(k int) []int {
		fds := make([]int, 0, k)
		for range k {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
				t.Fatal(err)
			}
			if _, err := unix.Write(fd, []byte{5}); err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
		}
		waitStat(t, f.srv, "stalled sessions", func(st relay.Stats) bool { return st.Active == int64(k) })
		return fds
	}
	shut := func(fds []int) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		waitStat(t, f.srv, "sessions gone", func(st relay.Stats) bool { return st.Active == 0 })
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// Warm-up: fd tables and pools at their size for n. Client and relay
	// sockets share this process's fd numbers, and the second round may
	// number them differently (a relay fd above the first round's highest
	// would double a loop's fd table inside the measurement): the warm-up
	// opens a quarter more.
	shut(open(n + n/4))
	before := heap()
	fds := open(n)
	after := heap()
	shut(fds)
	per := (int64(after) - int64(before)) / n
	t.Logf("%d stalled handshakes: heap %d → %d bytes, %d B each", n, before, after, per)
	if st := f.srv.Stats(); st.BufsHeld != 0 {
		t.Fatalf("%d buffers held", st.BufsHeld)
	}
	if after > before+2<<20 {
		t.Fatalf("%d stalled handshakes cost %d bytes of heap, want ≤ 2 MiB", n, after-before)
	}
}
