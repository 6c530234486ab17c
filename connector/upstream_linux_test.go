//go:build linux

package connector

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/testnet"
)

func boundPort(t testing.TB) (netip.AddrPort, func()) { return testnet.BoundPort(t) }

func setUpstreams(t testing.TB, p *Pool, listener string, cfgs ...UpstreamConfig) []*Upstream {
	t.Helper()
	ups, err := p.SetUpstreams(listener, cfgs)
	if err != nil {
		t.Fatal(err)
	}
	return ups
}

func upstreamStats(p *Pool, u *Upstream) UpstreamStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return u.statsLocked()
}

// healthLog collects OnHealth events.
type healthLog chan HealthEvent

func (h healthLog) wait(t testing.TB, up bool, d time.Duration) HealthEvent {
	t.Helper()
	select {
	case ev := <-h:
		if ev.Up != up {
			t.Fatalf("health event %+v, want up=%v", ev, up)
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no health event (up=%v) within %v", up, d)
	}
	return HealthEvent{}
}

// Isolation: a hanging upstream at its cap with a queue behind it does not
// delay another upstream. One worker, 8 slots, 4 per upstream: the hanging
// one holds 4 slots and queues 16 more; every request to the healthy one
// connects while those are all still waiting, and no more than 4 of the
// hanging one's ever run at once.
func TestUpstreamIsolation(t *testing.T) {
	hang := hangingAddr(t)
	srv := newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{Workers: 1, MaxInflight: 8, UpstreamMaxInflight: 4, Pacing: PacingFixed,
		FailAfter: -1, ConnectTimeout: 30 * time.Second})
	bad := setUpstreams(t, p, "bad", UpstreamConfig{Addr: hang})
	good := setUpstreams(t, p, "good", UpstreamConfig{Addr: srv.addr})
	const nBad, nGood = 20, 20
	hb := newRecorder(nBad)
	badReqs := make([]Request, nBad)
	for i := range badReqs {
		badReqs[i] = Request{Upstreams: bad, Handler: hb, Cookie: uint64(i)}
		if err := p.Submit(&badReqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "4 bad in flight, 16 queued", func() bool {
		st := upstreamStats(p, bad[0])
		return st.Inflight == 4 && st.Queued == nBad-4
	})
	hg := newRecorder(nGood)
	goodReqs := make([]Request, nGood)
	for i := range goodReqs {
		goodReqs[i] = Request{Upstreams: good, Handler: hg, Cookie: uint64(i)}
		if err := p.Submit(&goodReqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	results := hg.wait(t, nGood, 20*time.Second)
	closeLeft(t, results)
	for _, r := range results {
		if r.Err != nil || r.Upstream != good[0] || r.Attempts != 1 {
			t.Fatalf("good request %d: err %v upstream %v attempts %d", r.Cookie, r.Err, r.Upstream, r.Attempts)
		}
		unix.Close(r.FD)
		r.FD = -1
	}
	if st := upstreamStats(p, bad[0]); st.Inflight != 4 || st.Queued != nBad-4 || st.Connected != 0 {
		t.Fatalf("bad upstream after the good ones: %+v", st)
	}
	if n := len(hb.ch); n != 0 {
		t.Fatalf("%d bad requests completed already", n)
	}
	for i := range badReqs {
		badReqs[i].Cancel()
	}
	for _, r := range hb.wait(t, nBad, 20*time.Second) {
		if r.Err != ErrCanceled {
			t.Fatalf("bad request %d: %v", r.Cookie, r.Err)
		}
	}
	p.Close()
	hb.checkOnce(t, nBad)
	hg.checkOnce(t, nGood)
	if st := p.Stats(); st.InflightHighWater[0] > 8 {
		t.Fatalf("high water %d > 8", st.InflightHighWater[0])
	}
}

// Passive health: with one of three upstreams refusing, or blackholed (its
// SYNs dropped: a full accept queue), FailAfter failures with no connect
// mark it down (one event), and from then on no request tries it: each
// connects at its first attempt to a healthy one, without waiting.
func TestPassiveHealthSkipsDown(t *testing.T) {
	// Long enough that a good connect on a starved worker (-race, a CPU
	// hog) does not time out and read as a wait for the down upstream.
	const to = time.Second
	for _, tc := range []struct {
		name string
		dead func(testing.TB) netip.AddrPort
		fail Class
	}{
		{"refused", refusedAddr, ClassRefused},
		{"blackhole", hangingAddr, ClassTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dead := tc.dead(t)
			a := newEchoServer(t, "tcp4", "127.0.0.1:0")
			b := newEchoServer(t, "tcp4", "127.0.0.1:0")
			events := make(healthLog, 8)
			p := newPool(t, Config{Workers: 1, FailAfter: 2, ConnectTimeout: to, Backoff: time.Hour, BackoffMax: time.Hour,
				OnHealth: func(ev HealthEvent) { events <- ev }})
			ups := setUpstreams(t, p, "l", UpstreamConfig{Addr: dead}, UpstreamConfig{Addr: a.addr}, UpstreamConfig{Addr: b.addr})
			const n = 10
			h := newRecorder(n)
			reqs := make([]Request, n)
			for i := range reqs {
				// Every request starts at the dead upstream, as a
				// round-robin would for a third of them.
				reqs[i] = Request{Upstreams: ups, Handler: h, Cookie: uint64(i)}
				if err := p.Submit(&reqs[i]); err != nil {
					t.Fatal(err)
				}
				r := h.wait(t, 1, 10*time.Second)[0]
				if r.Err != nil || r.Upstream == ups[0] {
					t.Fatalf("request %d: err %v via %v", i, r.Err, r.Addr)
				}
				if i >= 2 && (r.Attempts != 1 || r.Latency >= to) {
					t.Fatalf("request %d tried the down upstream: %d attempts, %v", i, r.Attempts, r.Latency)
				}
				unix.Close(r.FD)
				r.FD = -1
			}
			ev := events.wait(t, false, 5*time.Second)
			if ev.Key.Addr != dead || ev.Key.Listener != "l" || ev.Down != time.Hour {
				t.Fatalf("down event %+v", ev)
			}
			// A re-sent SYN of the blackhole may time out in the queue.
			if st := upstreamStats(p, ups[0]); st.Up || st.Failures[tc.fail]+st.QueueTO < 2 || st.Transitions != 1 || st.Limit != 1 {
				t.Fatalf("dead upstream stats %+v", st)
			}
			p.Close()
			h.checkOnce(t, n)
			if len(events) != 0 {
				t.Fatalf("more health events: %+v", <-events)
			}
		})
	}
}

// Fail fast: with every candidate down, Submit refuses at once with
// ErrUpstreamsDown instead of queueing; after the back-off one trial goes
// through, and when the upstream answers again it is up.
func TestAllDownFailFastThenTrial(t *testing.T) {
	addr, listen := boundPort(t)
	events := make(healthLog, 8)
	const backoff = 300 * time.Millisecond
	p := newPool(t, Config{Workers: 1, FailAfter: 1, Backoff: backoff, BackoffMax: time.Hour,
		OnHealth: func(ev HealthEvent) { events <- ev }})
	ups := setUpstreams(t, p, "l", UpstreamConfig{Addr: addr})
	h := newRecorder(3)
	r0 := Request{Upstreams: ups, Handler: h, Cookie: 0}
	// The upstream is marked down after this Submit, so the back-off ends
	// no earlier than this instant plus the back-off. (Reading the clock
	// once the failure has reached the test would come later than the
	// mark by however long the delivery took.)
	submitted := time.Now()
	if err := p.Submit(&r0); err != nil {
		t.Fatal(err)
	}
	if r := h.wait(t, 1, 10*time.Second)[0]; !errors.Is(r.Err, syscall.ECONNREFUSED) {
		t.Fatalf("first request: %v", r.Err)
	}
	events.wait(t, false, 5*time.Second)
	r1 := Request{Upstreams: ups, Handler: h, Cookie: 1}
	if err := p.Submit(&r1); err != ErrUpstreamsDown {
		t.Fatalf("Submit while down: %v, want ErrUpstreamsDown", err)
	}
	if st := p.Stats(); st.DownRejected != 1 {
		t.Fatalf("down rejections %d", st.DownRejected)
	}
	listen() // it answers again
	// The trial is let through once the back-off is over.
	r2 := Request{Upstreams: ups, Handler: h, Cookie: 2}
	eventually(t, 10*time.Second, "the trial is admitted", func() bool {
		return p.Submit(&r2) == nil
	})
	if waited := time.Since(submitted); waited < backoff {
		t.Fatalf("trial admitted after %v, before the %v back-off", waited, backoff)
	}
	r := h.wait(t, 1, 10*time.Second)[0]
	if r.Err != nil {
		t.Fatalf("trial: %v", r.Err)
	}
	unix.Close(r.FD)
	ev := events.wait(t, true, 5*time.Second)
	if ev.Down < backoff {
		t.Fatalf("up event says down for %v", ev.Down)
	}
	if !ups[0].Up() {
		t.Fatal("not up after the trial")
	}
}

// Active check: Fall failed checks take a refusing upstream down, Rise
// passed checks bring it back once it listens; while down, requests for it
// are refused at once, and no session's slot is used by a check.
func TestActiveCheck(t *testing.T) {
	addr, listen := boundPort(t)
	events := make(healthLog, 8)
	p := newPool(t, Config{Workers: 1, FailAfter: -1, OnHealth: func(ev HealthEvent) { events <- ev }})
	// A timeout a starved worker cannot miss on loopback: a flap would add
	// transitions.
	ck := CheckConfig{Interval: 300 * time.Millisecond, Timeout: 250 * time.Millisecond, Rise: 2, Fall: 2}
	ups := setUpstreams(t, p, "l", UpstreamConfig{Addr: addr, Check: ck})
	ev := events.wait(t, false, 10*time.Second)
	if ev.Reason == "" || ev.Down != 0 {
		t.Fatalf("down event %+v", ev)
	}
	h := newRecorder(1)
	r := Request{Upstreams: ups, Handler: h}
	if err := p.Submit(&r); err != ErrUpstreamsDown {
		t.Fatalf("Submit while checks fail: %v", err)
	}
	listen()
	events.wait(t, true, 10*time.Second)
	st := upstreamStats(p, ups[0])
	if st.CheckFails < 2 || st.Checks < 4 || st.Transitions != 2 {
		t.Fatalf("check stats %+v", st)
	}
	if ps := p.Stats(); ps.Attempts != 0 || ps.InflightHighWater[0] != 0 {
		t.Fatalf("checks used session slots: %+v", ps)
	}
	if err := p.Submit(&r); err != nil {
		t.Fatal(err)
	}
	got := h.wait(t, 1, 10*time.Second)[0]
	if got.Err != nil {
		t.Fatal(got.Err)
	}
	unix.Close(got.FD)
	// Retiring the listener's upstreams stops the check.
	setUpstreams(t, p, "l")
	if len(p.UpstreamStats()) != 0 {
		t.Fatalf("retired upstreams still listed: %+v", p.UpstreamStats())
	}
}

// Adaptive pacing against a blackhole: every attempt is late (a lost SYN),
// so the limit is cut once per episode down to 1, lost SYNs are re-sent
// rather than waited out, and each request still ends with ErrTimeout at
// its own deadline, not before.
func TestAdaptiveCutsOnLostSYNs(t *testing.T) {
	hang := hangingAddr(t)
	const n, to = 8, 1500 * time.Millisecond
	p := newPool(t, Config{Workers: 1, FailAfter: -1, ConnectTimeout: to})
	ups := setUpstreams(t, p, "l", UpstreamConfig{Addr: hang})
	if st := upstreamStats(p, ups[0]); st.Limit != pacerInitial {
		t.Fatalf("initial limit %d", st.Limit)
	}
	h := newRecorder(n)
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Upstreams: ups, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(&reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range h.wait(t, n, 30*time.Second) {
		if r.Err != ErrTimeout || r.Latency < to || r.Attempts != 1 {
			t.Fatalf("request %d: %v after %v, %d attempts", r.Cookie, r.Err, r.Latency, r.Attempts)
		}
	}
	st := upstreamStats(p, ups[0])
	// 8 → 4 → 2 → 1: at least three cuts, each a late episode.
	if st.Limit != 1 || st.Cuts < 3 || st.Late < st.Cuts {
		t.Fatalf("after the blackhole: limit %d, %d cuts, %d late", st.Limit, st.Cuts, st.Late)
	}
	p.Close()
	h.checkOnce(t, n)
}

// SetUpstreams keeps an address's state across a reload, and validates.
func TestSetUpstreamsKeepsState(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	a := netip.MustParseAddrPort("127.0.0.1:1")
	b := netip.MustParseAddrPort("127.0.0.1:2")
	first := setUpstreams(t, p, "l", UpstreamConfig{Addr: a}, UpstreamConfig{Addr: b})
	second := setUpstreams(t, p, "l", UpstreamConfig{Addr: b})
	if len(second) != 1 || second[0] != first[1] {
		t.Fatal("the kept address got a new Upstream")
	}
	if st := p.UpstreamStats(); len(st) != 1 || st[0].Addr != b {
		t.Fatalf("stats %+v", st)
	}
	// A request that still names the retired upstream (taken from the
	// listener's old set just before the reload) is served, not refused.
	hr := newRecorder(1)
	r := Request{Upstreams: first[:1], Handler: hr}
	if err := p.Submit(&r); err != nil {
		t.Fatalf("a request naming a retired upstream: %v", err)
	}
	if got := hr.wait(t, 1, 10*time.Second)[0]; !errors.Is(got.Err, syscall.ECONNREFUSED) || got.Attempts != 1 {
		t.Fatalf("retired upstream: %v after %d attempts, want it tried (refused)", got.Err, got.Attempts)
	}
	if _, err := p.SetUpstreams("l", []UpstreamConfig{{Addr: netip.AddrPort{}}}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("invalid address: %v", err)
	}
	if _, err := p.SetUpstreams("l", []UpstreamConfig{{Addr: a, Check: CheckConfig{Interval: time.Second, Timeout: 2 * time.Second}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("timeout ≥ interval: %v", err)
	}
	other, _ := New(Config{Workers: 1})
	defer other.Close()
	r = Request{Upstreams: second, Handler: newRecorder(1)}
	if err := other.Submit(&r); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("another pool's upstream: %v", err)
	}
}

// Close halts every active check: with four checks in flight on one worker
// (their upstream never answers a SYN), each probe's socket is closed.
// Before the fix the drain walked the checker list while halting removed
// entries from it, so every other check kept its socket.
func TestCloseHaltsEveryCheck(t *testing.T) {
	hang := hangingAddr(t)
	base := testnet.CountFDs(t)
	p, err := New(Config{Workers: 1, FailAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	withPool := testnet.CountFDs(t)
	ck := CheckConfig{Interval: time.Minute, Timeout: 50 * time.Second, Rise: 1, Fall: 1} // the first probe starts at once and hangs
	for _, l := range []string{"a", "b", "c", "d"} {
		setUpstreams(t, p, l, UpstreamConfig{Addr: hang, Check: ck})
	}
	eventually(t, 10*time.Second, "one probe socket per check in flight", func() bool { return testnet.CountFDs(t) >= withPool+4 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := testnet.CountFDs(t); n != base {
		t.Fatalf("after Close: %d fds open, %d before the pool", n, base)
	}
}

// An upstream an operator drains gets no new request while the other one
// does; with every upstream drained, Submit refuses at once; enabled, it
// serves again. Unknown upstreams and states are refused.
func TestAdminStateDrain(t *testing.T) {
	a, b := newEchoServer(t, "tcp4", "127.0.0.1:0"), newEchoServer(t, "tcp4", "127.0.0.1:0")
	p := newPool(t, Config{Workers: 1})
	ups := setUpstreams(t, p, "l", UpstreamConfig{Addr: a.addr}, UpstreamConfig{Addr: b.addr})
	if prev, err := p.SetAdminState("l", a.addr, Draining); err != nil || prev != Enabled {
		t.Fatalf("drain: %v %v", prev, err)
	}
	h := newRecorder(4)
	for i := range 4 {
		r := &Request{Upstreams: ups, Handler: h, Cookie: uint64(i)}
		if err := p.Submit(r); err != nil {
			t.Fatal(err)
		}
	}
	got := h.wait(t, 4, 10*time.Second)
	defer closeLeft(t, got)
	for _, r := range got {
		if r.Err != nil || r.Addr != b.addr {
			t.Fatalf("request %d: %v to %v, want %v", r.Cookie, r.Err, r.Addr, b.addr)
		}
	}
	if _, err := p.SetAdminState("l", b.addr, Disabled); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(&Request{Upstreams: ups, Handler: newRecorder(1)}); err != ErrUpstreamsDown {
		t.Fatalf("every upstream drained: %v, want ErrUpstreamsDown", err)
	}
	for _, s := range p.UpstreamStats() {
		if want := map[netip.AddrPort]string{a.addr: "draining", b.addr: "disabled"}[s.Addr]; s.State() != want {
			t.Fatalf("%v: %s, want %s", s.Addr, s.State(), want)
		}
	}
	if _, err := p.SetAdminState("l", a.addr, Enabled); err != nil {
		t.Fatal(err)
	}
	h2 := newRecorder(1)
	if err := p.Submit(&Request{Upstreams: ups, Handler: h2}); err != nil {
		t.Fatal(err)
	}
	r := h2.wait(t, 1, 10*time.Second)
	defer closeLeft(t, r)
	if r[0].Err != nil || r[0].Addr != a.addr {
		t.Fatalf("enabled again: %v to %v", r[0].Err, r[0].Addr)
	}
	if _, err := p.SetAdminState("l", netip.MustParseAddrPort("127.0.0.1:1"), Draining); !errors.Is(err, ErrUnknownUpstream) {
		t.Fatalf("unknown upstream: %v", err)
	}
	if _, err := ParseAdminState("explode"); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("bad state: %v", err)
	}
}
