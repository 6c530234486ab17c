package policy

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func mustLimiter(t testing.TB, cfg LimiterConfig) *SourceLimiter {
	t.Helper()
	l, err := NewSourceLimiter(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLimiterConcurrency(t *testing.T) {
	l := mustLimiter(t, LimiterConfig{MaxConcurrent: 2})
	ip := netip.MustParseAddr("192.0.2.1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	for i, want := range []string{"", "", RuleSourceConc} {
		src := ip
		if i == 1 {
			src = mapped // the same source in another spelling
		}
		if rule, _ := l.Acquire(src, t0); rule != want {
			t.Fatalf("acquire %d: %q, want %q", i, rule, want)
		}
	}
	if rule, ok := l.Acquire(netip.MustParseAddr("192.0.2.2"), t0); !ok {
		t.Fatalf("other source refused: %q", rule)
	}
	l.Release(ip, t0)
	if rule, ok := l.Acquire(ip, t0); !ok {
		t.Fatalf("after release: %q", rule)
	}
	l.Release(ip, t0)
	l.Release(ip, t0)
	l.Release(ip, t0) // unpaired: ignored
	l.Release(netip.MustParseAddr("192.0.2.2"), t0)
	if n := l.Len(); n != 0 {
		t.Fatalf("tracked after all released: %d", n)
	}
}

func TestLimiterRate(t *testing.T) {
	l := mustLimiter(t, LimiterConfig{Rate: 2, Burst: 2})
	ip := netip.MustParseAddr("2001:db8::1")
	same64 := netip.MustParseAddr("2001:db8::ffff")
	other64 := netip.MustParseAddr("2001:db8:0:1::1")
	step := func(src netip.Addr, at time.Duration, want string) {
		t.Helper()
		rule, ok := l.Acquire(src, t0.Add(at))
		if rule != want || ok != (want == "") {
			t.Fatalf("Acquire(%v, +%v) = %q %v, want %q", src, at, rule, ok, want)
		}
		if ok {
			l.Release(src, t0.Add(at))
		}
	}
	step(ip, 0, "")
	step(same64, 0, "")                            // same /64 shares the bucket
	step(ip, 0, RuleSourceRate)                    // burst used up
	step(other64, 0, "")                           // another /64 has its own
	step(ip, 400*time.Millisecond, RuleSourceRate) // 0.8 tokens
	step(ip, 500*time.Millisecond, "")             // 1.0 token
	step(ip, 500*time.Millisecond, RuleSourceRate)
	step(ip, 10*time.Second, "") // refilled to burst, not beyond
	step(ip, 10*time.Second, "")
	step(ip, 10*time.Second, RuleSourceRate)
}

func TestLimiterPenalize(t *testing.T) {
	l := mustLimiter(t, LimiterConfig{Rate: 1, Burst: 1})
	ip := netip.MustParseAddr("192.0.2.9")
	if _, ok := l.Acquire(ip, t0); !ok {
		t.Fatal("first acquire refused")
	}
	l.Penalize(ip, 1, t0) // a failed login
	l.Release(ip, t0)
	if rule, _ := l.Acquire(ip, t0.Add(1500*time.Millisecond)); rule != RuleSourceRate {
		t.Fatalf("penalized source admitted early: %q", rule)
	}
	if _, ok := l.Acquire(ip, t0.Add(2*time.Second)); !ok {
		t.Fatal("penalty never expires")
	}
}

func TestLimiterMemoryBound(t *testing.T) {
	const maxSources = 64
	l := mustLimiter(t, LimiterConfig{Rate: 1, Burst: 5, MaxSources: maxSources})
	// 10,000 distinct sources, each connecting once: each leaves a partly
	// drained bucket behind, so only eviction keeps the table bounded.
	for i := range 10000 {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if rule, ok := l.Acquire(ip, t0); !ok {
			t.Fatalf("source %d refused: %q", i, rule)
		}
		l.Release(ip, t0)
		if n := l.Len(); n > maxSources {
			t.Fatalf("tracked %d > %d after %d sources", n, maxSources, i)
		}
	}
	if n := l.Sweep(t0.Add(time.Minute)); n == 0 || l.Len() != 0 {
		t.Fatalf("sweep dropped %d, %d left", n, l.Len())
	}
}

func TestLimiterTableFull(t *testing.T) {
	l := mustLimiter(t, LimiterConfig{MaxSources: 32}) // one source per shard
	admitted, full := 0, 0
	var held []netip.Addr
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		switch rule, ok := l.Acquire(ip, t0); {
		case ok:
			admitted++
			held = append(held, ip)
		case rule == RuleSourceTableFul:
			full++
		default:
			t.Fatalf("unexpected refusal %q", rule)
		}
	}
	// Sources with live sessions are never evicted: exactly one per shard fits.
	if admitted != limiterShards || full != 1000-limiterShards || l.Len() != limiterShards {
		t.Fatalf("admitted %d full %d tracked %d", admitted, full, l.Len())
	}
	for _, ip := range held {
		l.Release(ip, t0)
	}
	if l.Len() != 0 {
		t.Fatalf("tracked after release: %d", l.Len())
	}
}

func TestLimiterConcurrentUse(t *testing.T) {
	l := mustLimiter(t, LimiterConfig{MaxConcurrent: 3, Rate: 1e6, MaxSources: 1024})
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := map[string]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				ip := netip.AddrFrom4([4]byte{203, 0, 113, byte((g*2000 + i) % 50)})
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if rule, ok := l.Acquire(ip, now); ok {
					l.Release(ip, now)
				} else {
					mu.Lock()
					refused[rule]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for rule := range refused {
		if rule != RuleSourceConc {
			t.Errorf("unexpected refusal reason %q", rule)
		}
	}
	l.Sweep(t0.Add(time.Hour))
	if n := l.Len(); n != 0 {
		t.Fatalf("%d sources still tracked: a session count leaked", n)
	}
}

func TestLimiterConfig(t *testing.T) {
	for _, c := range []LimiterConfig{{MaxConcurrent: -1}, {Rate: -1}, {IPv6Prefix: 129}, {MaxSources: -5}} {
		if _, err := NewSourceLimiter(c, t0); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func BenchmarkLimiter(b *testing.B) {
	l := mustLimiter(b, LimiterConfig{MaxConcurrent: 100, Rate: 1e9, Burst: 1 << 30})
	ips := make([]netip.Addr, 256)
	for i := range ips {
		ips[i] = netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ip := ips[i&255]
		i++
		l.Acquire(ip, t0)
		l.Release(ip, t0)
	}
}

// sameShard returns n addresses of 10.0.0.0/8 that the limiter puts in one
// shard.
func sameShard(l *SourceLimiter, n int) []netip.Addr {
	var out []netip.Addr
	var want *limiterShard
	for i := 1; len(out) < n; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		sh := l.shard(l.key(a))
		if want == nil {
			want = sh
		}
		if sh == want {
			out = append(out, a)
		}
	}
	return out
}

// Review C12: a full shard never evicts a source in rate debt (its penalty
// would be washed by filling the shard from other addresses); it refuses the
// newcomer instead. A source that can still open a session is evicted.
func TestEvictionKeepsRateDebt(t *testing.T) {
	now := time.Unix(1000, 0)
	l, err := NewSourceLimiter(LimiterConfig{Rate: 1, Burst: 1, MaxSources: limiterShards}, now) // one entry per shard
	if err != nil {
		t.Fatal(err)
	}
	ips := sameShard(l, 2)
	a, b := ips[0], ips[1]
	if _, ok := l.Acquire(a, now); !ok {
		t.Fatal("first session of a refused")
	}
	l.Release(a, now)     // a: no session, its one token spent
	l.Penalize(a, 1, now) // and a failed login on top (no-op without an entry; a has one)
	if rule, ok := l.Acquire(b, now); ok || rule != RuleSourceTableFul {
		t.Fatalf("b got in by evicting a, who is in rate debt (rule %q)", rule)
	}
	if rule, ok := l.Acquire(a, now); ok || rule != RuleSourceRate {
		t.Fatalf("a's debt was washed (ok %v rule %q)", ok, rule)
	}
	// Three seconds on, a's bucket is full again: a is idle and makes room.
	later := now.Add(3 * time.Second)
	if _, ok := l.Acquire(b, later); !ok {
		t.Fatal("b refused although a's bucket refilled")
	}
}

// SweepShards walks the table a slice at a time: after NumShards calls of
// one shard each, every idle source is gone, as after one Sweep.
func TestSweepShardsCoversTable(t *testing.T) {
	now := time.Unix(1000, 0)
	l, err := NewSourceLimiter(LimiterConfig{Rate: 10, Burst: 10}, now)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if _, ok := l.Acquire(a, now); !ok {
			t.Fatal(i)
		}
		l.Release(a, now) // a token short of full: kept until refilled
	}
	if got := l.Len(); got != n {
		t.Fatalf("%d sources tracked, want %d", got, n)
	}
	later := now.Add(time.Second) // every bucket full again
	dropped := 0
	for range NumShards - 1 {
		dropped += l.SweepShards(1, later)
	}
	if dropped == n || l.Len() == 0 {
		t.Fatalf("%d shard sweeps dropped everything: not one shard per call", NumShards-1)
	}
	dropped += l.SweepShards(1, later)
	if dropped != n || l.Len() != 0 {
		t.Fatalf("%d shard sweeps dropped %d of %d (left %d)", NumShards, dropped, n, l.Len())
	}
}
