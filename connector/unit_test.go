//go:build linux

package connector

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

type atomicMax struct{ v atomic.Int64 }

func (m *atomicMax) observe(x int64) {
	for {
		cur := m.v.Load()
		if x <= cur || m.v.CompareAndSwap(cur, x) {
			return
		}
	}
}

func (m *atomicMax) Load() int64 { return m.v.Load() }

func TestClassify(t *testing.T) {
	sys := func(e syscall.Errno) error { return os.NewSyscallError("connect", e) }
	for _, tc := range []struct {
		err  error
		want Class
		name string
	}{
		{sys(syscall.ECONNREFUSED), ClassRefused, "refused"},
		{ErrTimeout, ClassTimeout, "timeout"},
		{fmt.Errorf("dial x: %w", ErrTimeout), ClassTimeout, "timeout"},
		{sys(syscall.ETIMEDOUT), ClassTimeout, "timeout"},
		{sys(syscall.ENETUNREACH), ClassUnreachable, "unreachable"},
		{sys(syscall.EHOSTUNREACH), ClassUnreachable, "unreachable"},
		{sys(syscall.EADDRNOTAVAIL), ClassAddrNotAvail, "addrnotavail"},
		{syscall.EADDRNOTAVAIL, ClassAddrNotAvail, "addrnotavail"},
		{sys(syscall.EMFILE), ClassOther, "other"},
		{ErrCanceled, ClassOther, "other"},
		{nil, ClassOther, "other"},
	} {
		if got := Classify(tc.err); got != tc.want || got.String() != tc.name {
			t.Errorf("Classify(%v) = %v (%d), want %v", tc.err, got, got, tc.want)
		}
	}
	if Class(99).String() != "other" {
		t.Error("out-of-range class")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		key string // "" = valid
	}{
		{Config{}, ""},
		{Config{Workers: 4, MaxInflight: 8, Queue: 10, ConnectTimeout: time.Second, Tick: time.Millisecond}, ""},
		{Config{Workers: -1}, "connector.workers"},
		{Config{Workers: 1000}, "connector.workers"},
		{Config{MaxInflight: -1}, "connector.max_inflight"},
		{Config{Queue: -5}, "connector.queue"},
		{Config{ConnectTimeout: -time.Second}, "connector.connect_timeout"},
		{Config{Tick: -1}, "connector.tick"},
		{Config{ConnectTimeout: time.Millisecond}, "connector.tick"}, // default 10ms tick > 1ms
		{Config{Pacing: "fast"}, "connector.pacing"},
		{Config{UpstreamMaxInflight: -1}, "connector.upstream_max_inflight"},
		{Config{UpstreamQueue: -1}, "connector.upstream_queue"},
		{Config{FailAfter: 5000}, "connector.health.fail_after"},
		{Config{Backoff: -1}, "connector.health.backoff"},
		{Config{Backoff: time.Minute, BackoffMax: time.Second}, "connector.health.backoff_max"},
		{Config{Pacing: PacingFixed, FailAfter: -1, UpstreamMaxInflight: 1}, ""},
	} {
		err := tc.cfg.Validate()
		if tc.key == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%+v: %v, want ErrInvalidConfig naming %s", tc.cfg, err, tc.key)
		}
		if _, nerr := New(tc.cfg); !errors.Is(nerr, ErrInvalidConfig) {
			t.Errorf("New(%+v): %v", tc.cfg, nerr)
		}
	}
}

func TestLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {time.Microsecond, 0}, {2 * time.Microsecond, 1}, {3 * time.Microsecond, 2},
		{time.Millisecond, 10}, {time.Hour, NumLatencyBuckets - 1},
	} {
		got := latencyBucket(tc.d)
		if got != tc.want {
			t.Errorf("bucket(%v) = %d, want %d", tc.d, got, tc.want)
		}
		if got < NumLatencyBuckets-1 && tc.d > LatencyBucketBound(got) {
			t.Errorf("%v above its bucket bound %v", tc.d, LatencyBucketBound(got))
		}
	}
}

// The adaptive pacer, driven with exact times.
func TestPacer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	p := newPacer(true, 64)
	if p.cap() != pacerInitial {
		t.Fatalf("initial cap %d", p.cap())
	}
	// Not limited: no growth however many successes.
	for i := range 100 {
		p.success(50*time.Microsecond, at(i), false)
	}
	if p.cap() != pacerInitial {
		t.Fatalf("grew without demand: %d", p.cap())
	}
	if got := p.minLatency(); got != 50*time.Microsecond {
		t.Fatalf("min latency %v", got)
	}
	if got := p.lateAfter(5*time.Second, 0); got != lateFloor {
		t.Fatalf("late after %v, want the floor", got)
	}
	// Each re-sent SYN of a request doubles its threshold, up to the timeout.
	for k, want := range []time.Duration{lateFloor, 2 * lateFloor, 4 * lateFloor, 8 * lateFloor} {
		if got := p.lateAfter(5*time.Second, uint8(k)); got != want {
			t.Fatalf("late after %v on re-send %d, want %v", got, k, want)
		}
	}
	if got := p.lateAfter(5*time.Second, maxResends); got != 5*time.Second {
		t.Fatalf("late after %v after %d re-sends, want the timeout", got, maxResends)
	}
	// Slow start: +1 per limited success, up to the ceiling.
	for i := range 100 {
		p.success(50*time.Microsecond, at(100+i), true)
	}
	if p.cap() != 64 {
		t.Fatalf("slow start reached %d, want the ceiling 64", p.cap())
	}
	// One cut per episode: the attempts in flight when it was cut (started
	// before it) do not cut again.
	if !p.congestion(at(300), at(500)) || p.cap() != 32 {
		t.Fatalf("first cut: cap %d", p.cap())
	}
	for _, started := range []int{300, 400, 499} {
		if p.congestion(at(started), at(600)) {
			t.Fatalf("an attempt started at %d ms (before the cut) cut again", started)
		}
	}
	if !p.congestion(at(500), at(700)) || p.cap() != 16 {
		t.Fatalf("second episode: cap %d", p.cap())
	}
	for k := 0; p.cap() > 1; k++ {
		p.congestion(at(800+k*200), at(900+k*200))
	}
	p.congestion(at(5000), at(5100))
	if p.cap() != 1 || p.cuts < 6 {
		t.Fatalf("floor: cap %d after %d cuts", p.cap(), p.cuts)
	}
	// Congestion avoidance above ssthresh (1): +1/limit per success.
	for i := range 3 {
		p.success(50*time.Microsecond, at(5200+i), true)
	}
	if p.cap() != 2 {
		t.Fatalf("after 3 successes from 1: cap %d (limit %.2f)", p.cap(), p.limit)
	}
	// Calm for pacerCalmSpan: slow start resumes, and the limit climbs
	// back to the ceiling in well under a thousand successes.
	n := 0
	for ; p.cap() < 64 && n < 1000; n++ {
		p.success(50*time.Microsecond, at(5100+int(pacerCalmSpan/time.Millisecond)+n), true)
	}
	if p.cap() != 64 || n > 100 {
		t.Fatalf("recovery: cap %d after %d successes", p.cap(), n)
	}
	// A distant upstream: late is 3× its minimum connect time.
	q := newPacer(true, 64)
	q.success(150*time.Millisecond, t0, false)
	if got := q.lateAfter(5*time.Second, 0); got != 450*time.Millisecond {
		t.Fatalf("late after %v for a 150 ms upstream", got)
	}
	if got := q.lateAfter(300*time.Millisecond, 0); got != 300*time.Millisecond {
		t.Fatalf("late after %v, beyond the timeout", got)
	}
	// The minimum forgets: two windows later a slower path is the minimum.
	q.success(time.Second, t0.Add(minLatWindow), false)
	q.success(time.Second, t0.Add(2*minLatWindow), false)
	if got := q.minLatency(); got != time.Second {
		t.Fatalf("min latency %v after two windows", got)
	}

	// The rate: off until a loss; then rateBeta of what the upstream
	// absorbed over the last rate windows, enforced by a token bucket,
	// growing by rateGain per rate window of demand, off again after a
	// calm span.
	r := newPacer(true, 64)
	base := t0.Add(time.Hour)
	for i := range 100 { // 1000 connects/s for 100 ms
		at := base.Add(time.Duration(i) * time.Millisecond)
		r.take(at)
		r.success(50*time.Microsecond, at, true)
	}
	if r.ratePerSec() != 0 || !r.due(base) {
		t.Fatalf("paced before any loss: %v", r.ratePerSec())
	}
	cutAt := base.Add(100 * time.Millisecond)
	r.congestion(cutAt, cutAt)
	if got := r.ratePerSec(); got < 650 || got > 710 {
		t.Fatalf("rate after the loss %.0f/s, want ~0.7 × 1000/s", got)
	}
	// One token now; the next only after 1/rate.
	if !r.take(cutAt) || r.take(cutAt) || r.due(cutAt.Add(time.Millisecond)) {
		t.Fatal("the bucket let two starts through at once")
	}
	if !r.due(cutAt.Add(2*time.Millisecond)) || !r.take(cutAt.Add(2*time.Millisecond)) {
		t.Fatal("no start 2 ms later at ~700/s")
	}
	before := r.ratePerSec()
	r.success(50*time.Microsecond, cutAt.Add(3*time.Millisecond), true)
	if r.ratePerSec() != before {
		t.Fatalf("rate %.1f grew within the rate window", r.ratePerSec())
	}
	r.success(50*time.Microsecond, cutAt.Add(rateWindow), true)
	if r.ratePerSec() != before*rateGain {
		t.Fatalf("rate %.1f after a window of demand, want %.1f", r.ratePerSec(), before*rateGain)
	}
	// Growth stops at 4× the starts the upstream was seen to take.
	for k := 2; k < 9; k++ {
		r.success(50*time.Microsecond, cutAt.Add(time.Duration(k)*rateWindow), true)
	}
	if got := r.ratePerSec(); got != 4000 {
		t.Fatalf("rate grew to %.0f/s, want the 4 × 1000/s cap", got)
	}
	r.success(50*time.Microsecond, cutAt.Add(pacerCalmSpan), true)
	if r.ratePerSec() != 0 {
		t.Fatalf("still paced at %.0f/s after a calm span", r.ratePerSec())
	}
	// A blackhole (nothing absorbed) is paced at the floor.
	b := newPacer(true, 64)
	b.congestion(t0, t0)
	if b.ratePerSec() != rateMin {
		t.Fatalf("blackhole rate %.1f", b.ratePerSec())
	}

	f := newPacer(false, 8)
	f.success(time.Millisecond, t0, true)
	if f.congestion(t0, t0.Add(time.Second)) || f.cap() != 8 {
		t.Fatalf("fixed pacing moved: cap %d", f.cap())
	}
}

func TestCheckConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c   CheckConfig
		key string
	}{
		{CheckConfig{Interval: -1}, "interval"},
		{CheckConfig{Interval: time.Second, Timeout: time.Second}, "timeout"},
		{CheckConfig{Interval: time.Second, Timeout: -1}, "timeout"},
		{CheckConfig{Interval: time.Second, Rise: -1}, "rise"},
		{CheckConfig{Interval: time.Second, Fall: 1001}, "fall"},
	} {
		err := tc.c.Validate("listeners[0].check")
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "listeners[0].check."+tc.key+" = ") {
			t.Errorf("%+v: %v, want the key %s named", tc.c, err, tc.key)
		}
	}
	if err := (CheckConfig{}).Validate("x"); err != nil {
		t.Errorf("no check: %v", err)
	}
	d := CheckConfig{Interval: 2 * time.Second}.withDefaults(time.Second)
	if d.Timeout != time.Second || d.Rise != DefaultRise || d.Fall != DefaultFall {
		t.Errorf("defaults %+v", d)
	}
}

// Shrink gives back a worker's fd table grown by a peak: an entry at fd
// 5000 grows it to 8192; with that attempt gone and one left at fd 1500 it
// shrinks to 2048, the remaining entry intact; with none, to minFDs.
func TestShrinkFDTable(t *testing.T) {
	p, err := New(Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w := p.workers[0]
	on := func(f func()) {
		done := make(chan struct{})
		if err := w.loop.Post(func(any) { f(); close(done) }, nil); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	a, b := &slot{}, &slot{}
	var size int
	on(func() { w.setFD(5000, a); w.setFD(1500, b); size = len(w.fds) })
	if size != 8192 {
		t.Fatalf("table %d entries after fd 5000", size)
	}
	p.Shrink()
	on(func() { size = len(w.fds) })
	if size != 8192 {
		t.Fatalf("shrunk to %d with fd 5000 in use", size)
	}
	on(func() { w.fds[5000] = nil })
	p.Shrink()
	var kept *slot
	on(func() { size, kept = len(w.fds), w.fds[1500] })
	if size != 2048 || kept != b {
		t.Fatalf("after shrink: %d entries, fd 1500 kept: %v", size, kept == b)
	}
	on(func() { w.fds[1500] = nil })
	p.Shrink()
	on(func() { size = len(w.fds) })
	if size != minFDs {
		t.Fatalf("after the last shrink: %d entries, want %d", size, minFDs)
	}
}
