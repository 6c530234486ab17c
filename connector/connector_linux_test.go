//go:build linux

package connector

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// The Go runtime opens its own epoll fd and eventfd on first network
	// use; open them now so that fd counts taken in tests are comparable.
	if ln, err := net.Listen("tcp4", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	goleak.VerifyTestMain(m)
}

// Acceptance: N requests to a real listener all connect; each fd is usable,
// non-blocking, close-on-exec and has TCP_NODELAY; the handler runs once each.
func TestConnectSuccess(t *testing.T) {
	const n = 2000
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{NoDelay: true})
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{srv.addr}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	results := h.wait(t, n, 60*time.Second)
	closeLeft(t, results)
	for _, r := range results {
		if r.Err != nil || r.FD < 0 {
			t.Fatalf("request %d: fd %d err %v", r.Cookie, r.FD, r.Err)
		}
		if r != &reqs[r.Cookie] || r.Addr != srv.addr || r.Attempts != 1 || r.Latency <= 0 {
			t.Fatalf("request %d: addr %v attempts %d latency %v", r.Cookie, r.Addr, r.Attempts, r.Latency)
		}
		fl, _ := unix.FcntlInt(uintptr(r.FD), unix.F_GETFL, 0)
		fdfl, _ := unix.FcntlInt(uintptr(r.FD), unix.F_GETFD, 0)
		nd, _ := unix.GetsockoptInt(r.FD, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		if fl&unix.O_NONBLOCK == 0 || fdfl&unix.FD_CLOEXEC == 0 || nd == 0 {
			t.Fatalf("request %d: flags %#x fdflags %#x nodelay %d", r.Cookie, fl, fdfl, nd)
		}
		if err := roundTrip(r.FD, byte(r.Cookie)); err != nil {
			t.Fatalf("request %d: round trip: %v", r.Cookie, err)
		}
		unix.Close(r.FD)
		r.FD = -1
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	h.checkOnce(t, n)
	st := p.Stats()
	if st.Connected != n || st.Attempts != n || st.Submitted != n || st.Completed() != n ||
		st.LatencyCount != n || st.Queued != 0 || sum(st.Inflight) != 0 || sum(st.Failures[:]) != 0 {
		t.Fatalf("stats: %+v", st)
	}
	var nb uint64
	for _, b := range st.LatencyBuckets {
		nb += b
	}
	if nb != n || st.LatencySum <= 0 {
		t.Fatalf("latency histogram holds %d, sum %v", nb, st.LatencySum)
	}
	for i, hw := range st.InflightHighWater {
		if hw < 1 || hw > DefaultMaxInflight {
			t.Fatalf("worker %d high water %d", i, hw)
		}
	}
}

func TestConnectIPv6Loopback(t *testing.T) {
	if _, err := netip.ParseAddr("::1"); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()})
		unix.Close(fd)
	}
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	srv := newEchoServer(t, "tcp6", "[::1]:0")
	p := newPool(t, Config{})
	h := newRecorder(1)
	r := &Request{Addrs: []netip.AddrPort{srv.addr}, Handler: h}
	if err := p.Submit(r); err != nil {
		t.Fatal(err)
	}
	h.wait(t, 1, 10*time.Second)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	defer unix.Close(r.FD)
	if err := roundTrip(r.FD, 6); err != nil {
		t.Fatal(err)
	}
}

// Acceptance: refused upstream first, good second — every request connects
// through the second, and each refusal is counted.
func TestFailoverRefusedThenGood(t *testing.T) {
	const n = 500
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	bad := refusedAddr(t)
	p := newPool(t, Config{})
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{bad, srv.addr}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range h.wait(t, n, 60*time.Second) {
		if r.Err != nil || r.FD < 0 || r.Attempts != 2 || r.Addr != srv.addr {
			t.Fatalf("request %d: fd %d err %v attempts %d addr %v", r.Cookie, r.FD, r.Err, r.Attempts, r.Addr)
		}
		unix.Close(r.FD)
	}
	p.Close()
	h.checkOnce(t, n)
	st := p.Stats()
	if st.Failures[ClassRefused] != n || st.Attempts != 2*n || st.Connected != n || st.Failed != 0 {
		t.Fatalf("refused %d attempts %d connected %d failed %d", st.Failures[ClassRefused], st.Attempts, st.Connected, st.Failed)
	}
}

// All tries refused: the errno comes back as *os.SyscallError, Tries wraps
// around Addrs, and every attempt is counted.
func TestAllRefused(t *testing.T) {
	bad := refusedAddr(t)
	p := newPool(t, Config{Workers: 1})
	h := newRecorder(1)
	r := &Request{Addrs: []netip.AddrPort{bad}, Tries: 3, Handler: h}
	if err := p.Submit(r); err != nil {
		t.Fatal(err)
	}
	h.wait(t, 1, 10*time.Second)
	var se *os.SyscallError
	if !errors.Is(r.Err, syscall.ECONNREFUSED) || !errors.As(r.Err, &se) || Classify(r.Err) != ClassRefused {
		t.Fatalf("err %#v", r.Err)
	}
	if r.FD != -1 || r.Attempts != 3 || r.Addr != bad {
		t.Fatalf("fd %d attempts %d addr %v", r.FD, r.Attempts, r.Addr)
	}
	p.Close()
	if st := p.Stats(); st.Failures[ClassRefused] != 3 || st.Failed != 1 || st.Attempts != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// Acceptance: a connect to a listener whose accept queue is full completes
// with ErrTimeout after ConnectTimeout (never early; median within +20% and a
// tick), counted as timeout.
func TestConnectTimeout(t *testing.T) {
	const n, to, tick = 10, 300 * time.Millisecond, 10 * time.Millisecond
	hang := hangingAddr(t)
	p := newPool(t, Config{Workers: 1, MaxInflight: n, ConnectTimeout: to, Tick: tick})
	h := newRecorder(n)
	reqs := make([]Request, n)
	// A plain Go timer started with the batch measures how late this
	// (possibly overloaded) machine runs anything: that lateness is allowed
	// on top of the +20% and one tick, nothing more.
	start := time.Now()
	control := time.NewTimer(to)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{hang}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	<-control.C
	slack := max(time.Since(start)-to, 0)
	var lat []time.Duration
	for _, r := range h.wait(t, n, 30*time.Second) {
		if r.Err != ErrTimeout || r.FD != -1 || r.Attempts != 1 || Classify(r.Err) != ClassTimeout {
			t.Fatalf("request %d: err %v fd %d attempts %d", r.Cookie, r.Err, r.FD, r.Attempts)
		}
		lat = append(lat, r.Latency)
	}
	// The wheel never fires early, so the lower bound is hard.
	if lo := slices.Min(lat); lo < to*8/10 {
		t.Fatalf("timed out early: min %v, want ≥ %v", lo, to*8/10)
	}
	if m, limit := median(lat), to*12/10+tick+slack; m > limit {
		t.Fatalf("median timeout %v, want ≤ %v (1.2×%v + tick + %v machine lateness)", m, limit, to, slack)
	}
	t.Logf("timeouts: min %v median %v max %v (control timer late by %v)", slices.Min(lat), median(lat), slices.Max(lat), slack)
	p.Close()
	h.checkOnce(t, n)
	if st := p.Stats(); st.Failures[ClassTimeout] != n || st.Failed != n || st.Connected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Acceptance: no more than MaxInflight connects are ever in flight, and a
// request's connect timeout includes its wait for a slot. With 10 hanging
// requests, one worker and MaxInflight 2: the high water mark is exactly 2
// (no handler ever sees more in flight), the requests that never got a slot
// expire in the queue, and all 10 end with ErrTimeout no sooner than the
// timeout.
func TestInflightCap(t *testing.T) {
	const n, to = 10, 200 * time.Millisecond
	hang := hangingAddr(t)
	p := newPool(t, Config{Workers: 1, MaxInflight: 2, ConnectTimeout: to})
	h := &capRecorder{recorder: newRecorder(n), p: p}
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{hang}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	attempts := 0
	for _, r := range h.wait(t, n, 60*time.Second) {
		if r.Err != ErrTimeout {
			t.Fatalf("request %d: %v", r.Cookie, r.Err)
		}
		if r.Latency < to {
			t.Fatalf("request %d timed out after %v, before its %v", r.Cookie, r.Latency, to)
		}
		attempts += r.Attempts
	}
	p.Close()
	h.checkOnce(t, n)
	st := p.Stats()
	if hw := st.InflightHighWater[0]; hw != 2 {
		t.Fatalf("high water %d, want exactly 2", hw)
	}
	if m := h.maxSeen.Load(); m > 2 || m < 1 {
		t.Fatalf("handlers saw up to %d in flight", m)
	}
	// Two attempts, plus any queued request whose own deadline (it was
	// submitted a little later) had not passed when a slot freed: it is
	// dialled with what is left of it. Every other one expired queued.
	if st.Failures[ClassTimeout] != n || st.Attempts != uint64(attempts) || attempts < 2 || attempts > n {
		t.Fatalf("timeouts counted %d, attempts %d (requests say %d), want %d and 2..%d", st.Failures[ClassTimeout], st.Attempts, attempts, n, n)
	}
}

type capRecorder struct {
	*recorder
	p       *Pool
	maxSeen atomicMax
}

func (h *capRecorder) Connected(r *Request) {
	h.maxSeen.observe(int64(h.p.Stats().Inflight[0]))
	h.recorder.Connected(r)
}

// Timeout is per attempt and fails over: hanging first, good second.
func TestFailoverAfterTimeout(t *testing.T) {
	const n, to = 6, 150 * time.Millisecond
	hang := hangingAddr(t)
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{})
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		// The good address twice: a worker starved for a whole timeout
		// on an overloaded machine must not fail the test, only show in
		// the exact accounting below.
		reqs[i] = Request{Addrs: []netip.AddrPort{hang, srv.addr, srv.addr}, Timeout: to, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	failed := 0
	for _, r := range h.wait(t, n, 30*time.Second) {
		if r.Err != nil || r.Attempts < 2 || r.Addr != srv.addr || r.Latency < to*8/10 {
			t.Fatalf("request %d: err %v attempts %d addr %v latency %v", r.Cookie, r.Err, r.Attempts, r.Addr, r.Latency)
		}
		failed += r.Attempts - 1
		if err := roundTrip(r.FD, 1); err != nil {
			t.Fatal(err)
		}
		unix.Close(r.FD)
	}
	p.Close()
	if st := p.Stats(); st.Failures[ClassTimeout] != uint64(failed) || st.Connected != n || sum(st.Failures[:]) != uint64(failed) {
		t.Fatalf("%d failed attempts, stats %+v", failed, st)
	}
	if failed != n {
		t.Logf("%d good attempts timed out (machine overloaded?)", failed-n)
	}
}

// Queue overflow: with both slots stuck on hanging connects and 5 queued,
// further Submits fail at once with ErrQueueFull and are counted; Close then
// completes all 7 accepted requests with ErrClosed.
func TestQueueFull(t *testing.T) {
	hang := hangingAddr(t)
	p := newPool(t, Config{Workers: 1, MaxInflight: 2, Queue: 5, ConnectTimeout: time.Minute})
	h := newRecorder(9)
	reqs := make([]Request, 9)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{hang}, Handler: h, Cookie: uint64(i)}
	}
	for i := 0; i < 2; i++ {
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "2 in flight", func() bool { return p.Stats().Inflight[0] == 2 })
	for i := 2; i < 7; i++ {
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	for i := 7; i < 9; i++ {
		if err := p.Submit(&reqs[i]); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("submit %d: %v, want ErrQueueFull", i, err)
		}
	}
	st := p.Stats()
	if st.QueueRejected != 2 || st.Queued != 5 || st.Submitted != 7 || st.Completed() != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.wait(t, 7, 10*time.Second) {
		if r.Err != ErrClosed || r.FD != -1 || r.Cookie >= 7 {
			t.Fatalf("request %d: %v", r.Cookie, r.Err)
		}
	}
	h.checkOnce(t, 7)
	if st := p.Stats(); st.Closed != 7 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Cancel while queued completes at once without connecting; Cancel in flight
// completes with ErrCanceled and the connector closes the socket.
func TestCancel(t *testing.T) {
	hang := hangingAddr(t)
	before := fdCount(t)
	p, err := New(Config{Workers: 1, MaxInflight: 1, ConnectTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := newRecorder(2)
	r0 := &Request{Addrs: []netip.AddrPort{hang}, Handler: h, Cookie: 0}
	r1 := &Request{Addrs: []netip.AddrPort{hang}, Handler: h, Cookie: 1}
	if err := p.Submit(r0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "r0 in flight", func() bool { return p.Stats().Inflight[0] == 1 })
	if err := p.Submit(r1); err != nil {
		t.Fatal(err)
	}
	r1.Cancel()
	got := h.wait(t, 1, 10*time.Second)[0]
	if got != r1 || r1.Err != ErrCanceled || r1.FD != -1 || r1.Attempts != 0 || r1.Addr.IsValid() {
		t.Fatalf("queued cancel: cookie %d err %v fd %d attempts %d", got.Cookie, got.Err, got.FD, got.Attempts)
	}
	if st := p.Stats(); st.Inflight[0] != 1 || st.Queued != 0 || st.Attempts != 1 {
		t.Fatalf("r0 should still be connecting alone: %+v", st)
	}
	r0.Cancel()
	got = h.wait(t, 1, 10*time.Second)[0]
	if got != r0 || r0.Err != ErrCanceled || r0.FD != -1 || r0.Attempts != 1 {
		t.Fatalf("in-flight cancel: err %v fd %d attempts %d", r0.Err, r0.FD, r0.Attempts)
	}
	r0.Cancel() // after completion: no-op, no second call
	r1.Cancel()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	h.checkOnce(t, 2)
	st := p.Stats()
	if st.Canceled != 2 || st.Closed != 0 || sum(st.Failures[:]) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if after := fdCount(t); after != before {
		t.Fatalf("fd leak: %d open before, %d after Close", before, after)
	}
}

// Cancel racing with real connects: each request completes once, either
// connected (the caller owns the fd) or canceled (the connector closed it).
func TestCancelRace(t *testing.T) {
	const n = 400
	before := fdCount(t)
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p, err := New(Config{MaxInflight: 4})
	if err != nil {
		t.Fatal(err)
	}
	h := newRecorder(n)
	reqs := make([]Request, n)
	var wg sync.WaitGroup
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{srv.addr}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			wg.Add(1)
			go func() { defer wg.Done(); reqs[i].Cancel() }()
		}
	}
	wg.Wait()
	canceled := 0
	for _, r := range h.wait(t, n, 60*time.Second) {
		switch {
		case r.Err == nil && r.FD >= 0:
			unix.Close(r.FD)
		case r.Err == ErrCanceled && r.FD == -1 && r.Cookie%2 == 0:
			canceled++
		default:
			t.Fatalf("request %d: fd %d err %v", r.Cookie, r.FD, r.Err)
		}
	}
	p.Close()
	h.checkOnce(t, n)
	if st := p.Stats(); int(st.Canceled) != canceled || int(st.Connected) != n-canceled {
		t.Fatalf("canceled %d, stats %+v", canceled, st)
	}
	srv.Close()
	if after := fdCount(t); after != before {
		t.Fatalf("fd leak: %d open before, %d after", before, after)
	}
	t.Logf("%d of %d canceled before connecting", canceled, n/2)
}

// Close with requests queued and in flight: every one completes with
// ErrClosed, once; Submit then fails; no goroutine or fd is left behind.
func TestClosePending(t *testing.T) {
	const n = 20
	hang := hangingAddr(t)
	before := fdCount(t)
	p, err := New(Config{Workers: 2, MaxInflight: 2, Queue: 100, ConnectTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Addrs: []netip.AddrPort{hang}, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "4 in flight", func() bool { return sum(p.Stats().Inflight) == 4 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited for the workers: every handler call has happened.
	if len(h.ch) != n {
		t.Fatalf("%d of %d completed by Close", len(h.ch), n)
	}
	for _, r := range h.wait(t, n, time.Second) {
		if r.Err != ErrClosed || r.FD != -1 {
			t.Fatalf("request %d: %v", r.Cookie, r.Err)
		}
	}
	h.checkOnce(t, n)
	if err := p.Submit(&Request{Addrs: []netip.AddrPort{hang}, Handler: h}); err != ErrClosed {
		t.Fatalf("submit after close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if st := p.Stats(); st.Closed != n || st.Queued != 0 || sum(st.Inflight) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if after := fdCount(t); after != before {
		t.Fatalf("fd leak: %d open before, %d after Close", before, after)
	}
	goleak.VerifyNone(t)
}

// A mix of refused, hanging and good first addresses with short timeouts
// churns through fd numbers (closes and new sockets in the same batches):
// every request must still end on the good address with the exact failure
// counts, which a stale event applied to a reused fd would break.
func TestMixedChurn(t *testing.T) {
	const n, to = 600, 300 * time.Millisecond
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	bad, hang := refusedAddr(t), hangingAddr(t)
	// A slot for every request: the timeout is per attempt, the wait for a
	// slot included, and this test is about fd churn, not queueing. The
	// good address is tried up to three times: under -race and a CPU hog
	// two workers take a while to dial 600 sockets, and a good attempt may
	// expire (counted as a timeout below).
	p := newPool(t, Config{Workers: 2, MaxInflight: n / 2})
	h := newRecorder(n)
	reqs := make([]Request, n)
	var wantRefused, wantTimeout uint64
	for i := range reqs {
		var addrs []netip.AddrPort
		switch i % 3 {
		case 0:
			addrs = []netip.AddrPort{bad, srv.addr, srv.addr, srv.addr}
			wantRefused++
		case 1:
			addrs = []netip.AddrPort{hang, srv.addr, srv.addr, srv.addr}
			wantTimeout++
		default:
			addrs = []netip.AddrPort{srv.addr, srv.addr, srv.addr}
		}
		reqs[i] = Request{Addrs: addrs, Timeout: to, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Every try but the last of each request failed: a dial, or (on a
	// starved worker) a wait for the worker that used up the timeout.
	var failed, dials uint64
	results := h.wait(t, n, 120*time.Second)
	closeLeft(t, results)
	for _, r := range results {
		if r.Err != nil || r.Addr != srv.addr {
			t.Fatalf("request %d: err %v addr %v", r.Cookie, r.Err, r.Addr)
		}
		failed += uint64(r.tried)
		dials += uint64(r.Attempts)
		if err := roundTrip(r.FD, byte(r.Cookie)); err != nil {
			t.Fatalf("request %d: %v", r.Cookie, err)
		}
		unix.Close(r.FD)
		r.FD = -1
	}
	p.Close()
	h.checkOnce(t, n)
	// Only the refusing address refuses; every other failed attempt is a
	// timeout (all of the hanging ones, plus good ones a starved worker
	// let expire). A stale event applied to a reused fd would show here as
	// a wrong class, a lost request or a socket that fails its round trip.
	st := p.Stats()
	if st.Failures[ClassRefused] != wantRefused || st.Failures[ClassTimeout] < wantTimeout ||
		sum(st.Failures[:]) != failed || st.Attempts != dials || st.Connected != n {
		t.Fatalf("refused %d/%d timeout %d/≥%d failed attempts %d/%d connected %d", st.Failures[ClassRefused], wantRefused,
			st.Failures[ClassTimeout], wantTimeout, sum(st.Failures[:]), failed, st.Connected)
	}
}

func TestSubmitInvalid(t *testing.T) {
	hang := hangingAddr(t)
	p := newPool(t, Config{Workers: 1, MaxInflight: 1, ConnectTimeout: time.Minute})
	h := newRecorder(2)
	for _, r := range []*Request{{Handler: h}, {Addrs: []netip.AddrPort{hang}}, {Addrs: []netip.AddrPort{hang, {}}, Handler: h}} {
		if err := p.Submit(r); !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("submit %+v: %v", r, err)
		}
	}
	r := &Request{Addrs: []netip.AddrPort{hang}, Handler: h}
	if err := p.Submit(r); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(r); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("second submit of a live request: %v", err)
	}
	p.Close()
	if got := h.wait(t, 1, time.Second)[0]; got.Err != ErrClosed {
		t.Fatal(got.Err)
	}
	if st := p.Stats(); st.Submitted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// unreachableAddr is the broadcast address of lo (inside 127/8): Linux
// refuses a TCP connect to a broadcast route at once with ENETUNREACH, before
// any packet exists, which exercises connect()'s immediate-error path.
func unreachableAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ap := netip.MustParseAddrPort("127.255.255.255:9")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != unix.ENETUNREACH {
		t.Skipf("connect to %v: %v, not an immediate ENETUNREACH here", ap, err)
	}
	return ap
}

// Immediate connect() errors take the failover path like asynchronous ones,
// and a worker whose connects all fail at once keeps pulling its FIFO
// without any further wake-up.
func TestImmediateError(t *testing.T) {
	const n = 50
	unreach := unreachableAddr(t)
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{Workers: 1, MaxInflight: 1})
	h := newRecorder(2 * n)
	reqs := make([]Request, 2*n)
	for i := range reqs {
		addrs := []netip.AddrPort{unreach}
		if i%2 == 1 {
			addrs = append(addrs, srv.addr)
		}
		reqs[i] = Request{Addrs: addrs, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range h.wait(t, 2*n, 30*time.Second) {
		if r.Cookie%2 == 1 {
			if r.Err != nil || r.Attempts != 2 || r.Addr != srv.addr {
				t.Fatalf("request %d: err %v attempts %d", r.Cookie, r.Err, r.Attempts)
			}
			unix.Close(r.FD)
			continue
		}
		if !errors.Is(r.Err, syscall.ENETUNREACH) || Classify(r.Err) != ClassUnreachable || r.FD != -1 || r.Attempts != 1 {
			t.Fatalf("request %d: err %v attempts %d", r.Cookie, r.Err, r.Attempts)
		}
	}
	p.Close()
	h.checkOnce(t, 2*n)
	if st := p.Stats(); st.Failures[ClassUnreachable] != 2*n || st.Failed != n || st.Connected != n {
		t.Fatalf("stats %+v", st)
	}
}

// blockingHandler stalls the worker inside Connected until released — a
// rule violation on purpose, to line up events in one epoll batch.
type blockingHandler struct {
	entered chan struct{}
	release chan struct{}
	result  chan *Request
}

func (h *blockingHandler) Connected(r *Request) {
	h.entered <- struct{}{}
	<-h.release
	h.result <- r
}

// A late event for a closed fd must never be applied to the socket that
// reuses its number. The worker is stalled (blocking handler) while request
// A's timeout passes and then A's connect completes, so one epoll batch holds
// [tick, A's fd]. The tick times A out first and fails it over to a second
// hanging address; fd holes are filled, so an fd closed at once would come
// straight back from socket() and A's stale "writable" would be taken for
// the new, unconnected socket. Correct: A times out twice (or, if the event
// came first, connects to the first address for real).
func TestNoStaleEventOnReusedFD(t *testing.T) {
	// The order under test (the timeout tick before A's event in one batch)
	// is built but not guaranteed: a run in which A's event came first
	// tests nothing, so it is repeated, a bounded number of times.
	for attempt := 1; attempt <= 4; attempt++ {
		if t.Run(fmt.Sprintf("attempt %d", attempt), staleEventAttempt) && tickFirst.Load() {
			return
		}
		if t.Failed() {
			return
		}
	}
	t.Skip("the tick never came before A's event in 4 attempts: the reuse case was not exercised")
}

// tickFirst records that an attempt of TestNoStaleEventOnReusedFD built the
// order it tests.
var tickFirst atomic.Bool

func staleEventAttempt(t *testing.T) {
	lfd1, hang1 := hangingListener(t)
	hang2 := hangingAddr(t)
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{Workers: 1, MaxInflight: 2})
	base := establishedTo(t, hang1)

	fillFDHoles(t)
	ha := newRecorder(1)
	a := &Request{Addrs: []netip.AddrPort{hang1, hang2}, Timeout: 400 * time.Millisecond, Handler: ha}
	if err := p.Submit(a); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "A connecting", func() bool { return p.Stats().Attempts == 1 })

	hb := &blockingHandler{entered: make(chan struct{}), release: make(chan struct{}), result: make(chan *Request, 1)}
	b := &Request{Addrs: []netip.AddrPort{srv.addr}, Handler: hb}
	if err := p.Submit(b); err != nil {
		t.Fatal(err)
	}
	<-hb.entered // the worker is stalled from here on
	// Make room for one connection: A's SYN retransmit (1s after its first
	// SYN) gets in and A's socket becomes ESTABLISHED while nobody polls.
	nfd, _, err := unix.Accept4(lfd1, unix.SOCK_CLOEXEC)
	if err != nil {
		close(hb.release)
		t.Fatal(err)
	}
	defer unix.Close(nfd)
	deadline := time.Now().Add(10 * time.Second)
	for establishedTo(t, hang1) <= base {
		if time.Now().After(deadline) {
			close(hb.release)
			t.Fatal("A's connect never completed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(hb.release)
	rb := <-hb.result
	if rb.Err == nil {
		unix.Close(rb.FD)
	}

	r := ha.wait(t, 1, 10*time.Second)[0]
	switch {
	case r.Err == ErrTimeout && r.Attempts == 2 && r.Addr == hang2:
		tickFirst.Store(true) // the batch order this test builds: tick first
	case r.Err == nil && r.Addr == hang1:
		if _, err := unix.Getpeername(r.FD); err != nil {
			t.Fatalf("connected to %v but getpeername: %v", r.Addr, err)
		}
		unix.Close(r.FD)
		t.Log("A's event came before the tick: no reuse to test this time")
	default:
		if r.FD >= 0 {
			_, perr := unix.Getpeername(r.FD)
			unix.Close(r.FD)
			t.Fatalf("stale event applied: err %v addr %v attempts %d, getpeername: %v", r.Err, r.Addr, r.Attempts, perr)
		}
		t.Fatalf("A: err %v addr %v attempts %d", r.Err, r.Addr, r.Attempts)
	}
}

// Submits that arrive one at a time, each after the worker went idle, must
// each wake it: Submit skips the wake-up only while the worker is full, and a
// lost wake-up would leave a request queued forever.
func TestSubmitAfterIdle(t *testing.T) {
	const n = 20
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	bad := refusedAddr(t)
	p := newPool(t, Config{Workers: 1, MaxInflight: 2})
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		addrs := []netip.AddrPort{srv.addr}
		if i%2 == 1 {
			addrs = []netip.AddrPort{bad}
		}
		reqs[i] = Request{Addrs: addrs, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
		r := h.wait(t, 1, 10*time.Second)[0]
		if (i%2 == 0) != (r.Err == nil) {
			t.Fatalf("request %d: %v", i, r.Err)
		}
		if r.FD >= 0 {
			unix.Close(r.FD)
		}
		eventually(t, 5*time.Second, "worker idle", func() bool { return p.Stats().Inflight[0] == 0 })
	}
	p.Close()
	h.checkOnce(t, n)
}
