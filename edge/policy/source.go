package policy

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Rule names returned by SourceACL.Check and SourceLimiter.Acquire.
const (
	RuleACLAllow       = "acl-allow"
	RuleACLDeny        = "acl-deny"
	RuleACLNotAllowed  = "acl-not-allowed"
	RuleSourceConc     = "source-concurrency"
	RuleSourceRate     = "source-rate"
	RuleSourceTableFul = "source-table-full"
)

// SourceACL is an immutable allow/deny list of client source prefixes.
// A nil *SourceACL allows everyone.
type SourceACL struct {
	allow, deny []netip.Prefix
}

// NewSourceACL builds an ACL. Deny wins over allow; an empty allow list
// allows every source not denied.
func NewSourceACL(allow, deny []string) (*SourceACL, error) {
	a := &SourceACL{}
	for _, s := range allow {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		a.allow = append(a.allow, p)
	}
	for _, s := range deny {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		a.deny = append(a.deny, p)
	}
	return a, nil
}

// Check reports whether source ip may connect (IPv4-mapped sources are
// unmapped first) and the rule that decided.
func (a *SourceACL) Check(ip netip.Addr) (string, bool) {
	if a == nil {
		return RuleACLAllow, true
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range a.deny {
		if p.Contains(ip) {
			return RuleACLDeny, false
		}
	}
	if len(a.allow) == 0 {
		return RuleACLAllow, true
	}
	for _, p := range a.allow {
		if p.Contains(ip) {
			return RuleACLAllow, true
		}
	}
	return RuleACLNotAllowed, false
}

// LimiterConfig configures a SourceLimiter. Zero values are documented per field.
type LimiterConfig struct {
	// MaxConcurrent is the most sessions one source may hold; 0 = unlimited.
	MaxConcurrent int
	// Rate is new sessions per second per source (token bucket); 0 = unlimited.
	Rate float64
	// Burst is the bucket size; 0 means max(1, ceil(Rate)).
	Burst int
	// MaxSources caps the sources tracked at once (memory bound, ~64 B
	// each); 0 means 65536. Keep it above the global max_sessions: a source
	// with live sessions is never evicted, so a table full of them refuses
	// new sources (RuleSourceTableFul).
	MaxSources int
	// IPv6Prefix groups IPv6 sources: all addresses in one /IPv6Prefix share
	// one set of limits, since a single host can own a whole /64. 0 means 64.
	IPv6Prefix int
}

var errLimiterConfig = errors.New("policy: invalid limiter config")

// Validate checks the config.
func (c LimiterConfig) Validate() error {
	if c.MaxConcurrent < 0 || c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Burst < 0 || c.MaxSources < 0 || c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		return fmt.Errorf("%w: %+v", errLimiterConfig, c)
	}
	return nil
}

const limiterShards = 32

type srcEntry struct {
	active int32
	tokens float64
	last   int64 // ns since SourceLimiter.epoch of the last refill
}

type limiterShard struct {
	mu sync.Mutex
	m  map[netip.Addr]srcEntry // mu guards m
	_  [48]byte                // 64 bytes per shard: locks on separate cache lines
}

// SourceLimiter enforces per-source concurrency and new-session rate. It is
// safe for concurrent use from several loops (sharded mutexes; the critical
// sections are a map lookup and some arithmetic), starts no goroutines, and
// takes the time as an argument. Memory is bounded by MaxSources: idle
// sources are dropped when their bucket is full again (Release, Sweep) and,
// under pressure, an idle source is evicted to make room for a new one.
type SourceLimiter struct {
	cfg      LimiterConfig
	burst    float64
	perShard int
	seed     maphash.Seed
	epoch    time.Time
	cursor   atomic.Uint32 // SweepShards' next shard
	shards   [limiterShards]limiterShard
}

// NewSourceLimiter builds a limiter; now is the time origin (any time.Now()).
func NewSourceLimiter(cfg LimiterConfig, now time.Time) (*SourceLimiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = 65536
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 64
	}
	if cfg.Burst == 0 {
		cfg.Burst = max(1, int(math.Ceil(cfg.Rate)))
	}
	l := &SourceLimiter{cfg: cfg, burst: float64(cfg.Burst), seed: maphash.MakeSeed(), epoch: now}
	l.perShard = max(1, (cfg.MaxSources+limiterShards-1)/limiterShards)
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Addr]srcEntry)
	}
	return l, nil
}

// Config returns the limiter's configuration, defaults filled in.
func (l *SourceLimiter) Config() LimiterConfig {
	sh := &l.shards[0]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return l.cfg
}

// errReconfigure is returned by Reconfigure for a change it cannot make in
// place.
var errReconfigure = errors.New("policy: MaxSources and IPv6Prefix cannot change in place")

// Reconfigure changes MaxConcurrent, Rate and Burst in place, keeping every
// source's live session count and bucket, so a reload with new limits does
// not hand every source a fresh allowance (sessions started before release
// into the same table). MaxSources and IPv6Prefix (the table's shape) cannot
// change this way: build a new limiter for that.
//
// Locking: every read of the mutable limits happens under one shard lock,
// and Reconfigure writes them holding all of them.
func (l *SourceLimiter) Reconfigure(cfg LimiterConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cur := l.Config()
	if cfg.MaxSources == 0 {
		cfg.MaxSources = 65536
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 64
	}
	if cfg.MaxSources != cur.MaxSources || cfg.IPv6Prefix != cur.IPv6Prefix {
		return errReconfigure
	}
	if cfg.Burst == 0 {
		cfg.Burst = max(1, int(math.Ceil(cfg.Rate)))
	}
	for i := range l.shards {
		l.shards[i].mu.Lock()
	}
	l.cfg.MaxConcurrent, l.cfg.Rate, l.cfg.Burst = cfg.MaxConcurrent, cfg.Rate, cfg.Burst
	l.burst = float64(cfg.Burst)
	for i := range l.shards {
		sh := &l.shards[i]
		for k, e := range sh.m {
			e.tokens = min(e.tokens, l.burst) // a smaller bucket: no credit beyond it
			sh.m[k] = e
		}
		sh.mu.Unlock()
	}
	return nil
}

func (l *SourceLimiter) key(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() && l.cfg.IPv6Prefix < 128 {
		p, _ := ip.Prefix(l.cfg.IPv6Prefix)
		return p.Addr()
	}
	return ip
}

func (l *SourceLimiter) shard(k netip.Addr) *limiterShard {
	b := k.As16()
	h := maphash.Bytes(l.seed, b[:])
	return &l.shards[h%limiterShards]
}

func (l *SourceLimiter) refill(e *srcEntry, now int64) {
	if l.cfg.Rate == 0 {
		return
	}
	if dt := now - e.last; dt > 0 {
		e.tokens = min(l.burst, e.tokens+float64(dt)*l.cfg.Rate/1e9)
		e.last = now
	}
}

// idle reports whether forgetting e loses nothing: no sessions, full bucket.
func (l *SourceLimiter) idle(e *srcEntry) bool {
	return e.active == 0 && (l.cfg.Rate == 0 || e.tokens >= l.burst)
}

// Acquire admits a new session from ip at now, or returns the rule that
// refused it. Every successful Acquire must be paired with one Release.
func (l *SourceLimiter) Acquire(ip netip.Addr, now time.Time) (string, bool) {
	t := int64(now.Sub(l.epoch))
	k := l.key(ip)
	sh := l.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[k]
	if !ok {
		if len(sh.m) >= l.perShard && !l.evictLocked(sh, t) {
			return RuleSourceTableFul, false
		}
		e = srcEntry{tokens: l.burst, last: t}
	}
	l.refill(&e, t)
	if l.cfg.MaxConcurrent > 0 && int(e.active) >= l.cfg.MaxConcurrent {
		sh.m[k] = e
		return RuleSourceConc, false
	}
	if l.cfg.Rate > 0 {
		if e.tokens < 1 {
			sh.m[k] = e
			return RuleSourceRate, false
		}
		e.tokens--
	}
	e.active++
	sh.m[k] = e
	return "", true
}

// Penalize takes n tokens from ip's bucket without admitting a session,
// e.g. for a failed authentication, so password guessing is rate-limited
// together with connection attempts. It does nothing when Rate is 0.
func (l *SourceLimiter) Penalize(ip netip.Addr, n float64, now time.Time) {
	t := int64(now.Sub(l.epoch))
	k := l.key(ip)
	sh := l.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if l.cfg.Rate == 0 {
		return
	}
	e, ok := sh.m[k]
	if !ok {
		return // only sources with a session in progress are penalized
	}
	l.refill(&e, t)
	e.tokens = max(e.tokens-n, -l.burst) // bounded debt: at most 2*Burst/Rate seconds of lockout
	sh.m[k] = e
}

// Release ends a session admitted by Acquire.
func (l *SourceLimiter) Release(ip netip.Addr, now time.Time) {
	t := int64(now.Sub(l.epoch))
	k := l.key(ip)
	sh := l.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[k]
	if !ok || e.active == 0 {
		return // unpaired Release: ignore rather than go negative
	}
	e.active--
	l.refill(&e, t)
	if l.idle(&e) {
		delete(sh.m, k)
		return
	}
	sh.m[k] = e
}

// evictLocked makes room in a full shard: it drops an idle source (no
// session, full bucket) if one is found among a bounded sample, else the
// sessionless source with the most tokens, as long as it could still open a
// session (at least one token): forgetting it costs the least rate history.
// A source in rate debt (below one token, or penalized for failed logins)
// is never evicted: that would wash its penalty, and a client that can fill
// a shard from many addresses (IPv6 /64s) could do it at will. Sources with
// sessions stay. With nothing to evict, the new source is refused.
func (l *SourceLimiter) evictLocked(sh *limiterShard, now int64) bool {
	const sample = 64
	var victim netip.Addr
	best := 1.0 // the least a victim must hold
	found := false
	i := 0
	for k, e := range sh.m {
		if i++; i > sample {
			break
		}
		if e.active != 0 {
			continue
		}
		l.refill(&e, now)
		if l.idle(&e) {
			delete(sh.m, k)
			return true
		}
		if l.cfg.Rate == 0 || e.tokens >= best {
			victim, best, found = k, e.tokens, true
		}
	}
	if found {
		delete(sh.m, victim)
	}
	return found
}

// Sweep forgets every idle source (no session, bucket refilled) and returns
// how many it dropped; it holds one shard lock at a time.
func (l *SourceLimiter) Sweep(now time.Time) int {
	n := 0
	for i := range l.shards {
		n += l.sweepShard(i, now)
	}
	return n
}

// SweepShards sweeps the next k of the limiter's shards (round-robin over
// calls) and returns how many idle sources it dropped. A caller on an event
// loop sweeps a bounded slice per call — one shard holds at most
// MaxSources/32 entries — rather than the whole table at once.
func (l *SourceLimiter) SweepShards(k int, now time.Time) int {
	n := 0
	for range min(k, limiterShards) {
		n += l.sweepShard(int(l.cursor.Add(1)%limiterShards), now)
	}
	return n
}

// NumShards is the number of shards SweepShards cycles through.
const NumShards = limiterShards

func (l *SourceLimiter) sweepShard(i int, now time.Time) int {
	t := int64(now.Sub(l.epoch))
	n := 0
	sh := &l.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for k, e := range sh.m {
		l.refill(&e, t)
		if l.idle(&e) {
			delete(sh.m, k)
			n++
		} else {
			sh.m[k] = e
		}
	}
	return n
}

// Len returns the number of tracked sources.
func (l *SourceLimiter) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
