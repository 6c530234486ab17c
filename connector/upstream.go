//go:build linux

package connector

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
)

// UpstreamKey names an upstream: one address of one listener's list. Two
// listeners relaying to the same address have two upstreams, each with its
// own cap, queue, health and limit, so one listener's storm cannot use the
// other's share.
type UpstreamKey struct {
	Listener string
	Addr     netip.AddrPort
}

func (k UpstreamKey) String() string { return k.Listener + "/" + k.Addr.String() }

// CheckConfig is an active health check: a TCP connect to the upstream every
// Interval, each bounded by Timeout. Rise consecutive successes bring a down
// upstream back, Fall consecutive failures take it down (HAProxy's check,
// inter, rise, fall). Interval 0 = no active check.
type CheckConfig struct {
	Interval time.Duration
	Timeout  time.Duration // 0 = min(Interval, the pool's ConnectTimeout)
	Rise     int           // 0 = 2
	Fall     int           // 0 = 3
}

// Defaults of CheckConfig.
const (
	DefaultRise = 2
	DefaultFall = 3
)

func (c CheckConfig) withDefaults(connectTimeout time.Duration) CheckConfig {
	if c.Interval <= 0 {
		return CheckConfig{}
	}
	if c.Timeout <= 0 {
		c.Timeout = min(c.Interval, connectTimeout)
	}
	if c.Rise <= 0 {
		c.Rise = DefaultRise
	}
	if c.Fall <= 0 {
		c.Fall = DefaultFall
	}
	return c
}

// Validate reports the first bad field, naming it by its config key under
// prefix (e.g. "listeners[0].check").
func (c CheckConfig) Validate(prefix string) error {
	bad := func(key string, v any, why string) error {
		return fmt.Errorf("%w: %s.%s = %v: %s", ErrInvalidConfig, prefix, key, v, why)
	}
	switch {
	case c.Interval < 0:
		return bad("interval", c.Interval, "must not be negative (0 = no active check)")
	case c.Interval == 0:
		return nil
	case c.Timeout < 0:
		return bad("timeout", c.Timeout, "must not be negative")
	case c.Timeout > 0 && c.Timeout >= c.Interval:
		return bad("timeout", c.Timeout, fmt.Sprintf("must be shorter than the interval %v", c.Interval))
	case c.Rise < 0 || c.Rise > 1000:
		return bad("rise", c.Rise, "must be 1..1000")
	case c.Fall < 0 || c.Fall > 1000:
		return bad("fall", c.Fall, "must be 1..1000")
	}
	return nil
}

// UpstreamConfig describes one upstream for Pool.SetUpstreams.
type UpstreamConfig struct {
	Addr  netip.AddrPort
	Check CheckConfig
}

// Upstream is the connector's state for one upstream: its queue of requests
// waiting for a connect slot, the connects in flight, the pacing limit and
// the health. Pool.SetUpstreams makes them; a Request names its candidates
// in Request.Upstreams.
type Upstream struct {
	p   *Pool
	key UpstreamKey
	cfg UpstreamConfig // Check with defaults applied

	up    atomic.Bool   // lock-free copy of health.up, for callers and Stats
	admin atomic.Uint32 // AdminState: written under p.mu, read by the checks without it

	// Guarded by p.mu.
	head, tail *Request // FIFO of requests waiting for this upstream
	queued     int
	inflight   int
	pace       pacer
	health     health
	ready      bool      // linked in the pool's ready ring
	paced      bool      // out of the ring until its rate allows the next start (pool.paced)
	rprev      *Upstream // ready ring links
	rnext      *Upstream
	retired    bool // removed by SetUpstreams: no check, not listed in stats; still serves requests that name it
	listed     bool // in p.all (the queue sweep's list)
	direct     bool // the pool's pseudo-upstream for requests by Addrs: no cap, no health
	st         upCounters
	check      *checker // active check, owned by one worker; nil without
	lat        [NumLatencyBuckets]uint64
	latCount   uint64
	latSum     time.Duration
}

// Key returns the upstream's listener and address.
func (u *Upstream) Key() UpstreamKey { return u.key }

// Addr returns the upstream's address.
func (u *Upstream) Addr() netip.AddrPort { return u.key.Addr }

// Up reports the health state: false while the upstream is marked down.
func (u *Upstream) Up() bool { return u.up.Load() }

type upCounters struct {
	connected     uint64
	failures      [NumClasses]uint64
	queueTimeouts uint64
	late          uint64 // attempts found late (a lost SYN) and, when adaptive, re-sent
	rejected      uint64 // Submits refused because the upstream's queue was full
	transitions   uint64
	checks        uint64
	checkFails    uint64
}

// health is passive and active health in one state machine (under p.mu).
//
//	up --(FailAfter consecutive failed attempts and no success for a
//	      connect timeout, or Fall failed checks)--> down
//	down --(no check: retryAt passed, one trial connect succeeds)--> up
//	down --(check: Rise consecutive successful checks)--> up
//
// A trial that fails doubles the back-off, up to BackoffMax.
type health struct {
	up        bool
	fails     int       // consecutive failed attempts (passive)
	lastOK    time.Time // the last connected attempt
	okChecks  int       // consecutive successful checks
	badChecks int       // consecutive failed checks
	backoff   time.Duration
	retryAt   time.Time
	downSince time.Time
}

// passiveFailure reports whether a failure of class c says something about
// the upstream (rather than about this host: no ports, no fds).
func passiveFailure(c Class) bool {
	return c == ClassRefused || c == ClassTimeout || c == ClassUnreachable
}

// UpstreamStats is a snapshot of one upstream.
type UpstreamStats struct {
	Listener    string
	Addr        netip.AddrPort
	Up          bool
	Admin       AdminState // the operator's setting (SetAdminState)
	Inflight    int
	Queued      int
	Limit       int     // connects allowed in flight now (1 while down: the trial)
	Rate        float64 // connect starts per second allowed now; 0 = not paced
	Connected   uint64
	Failures    [NumClasses]uint64 // failed attempts by class
	QueueTO     uint64             // requests that waited out their connect timeout in this upstream's queue
	Late        uint64             // attempts that went unanswered past the late threshold (lost SYNs)
	Rejected    uint64             // Submits refused: this upstream's queue was full
	Transitions uint64             // health state changes
	Cuts        uint64             // adaptive limit decreases
	Checks      uint64             // active checks run
	CheckFails  uint64             // active checks failed

	LatencyCount   uint64
	LatencySum     time.Duration
	LatencyBuckets [NumLatencyBuckets]uint64
}

func (u *Upstream) statsLocked() UpstreamStats {
	return UpstreamStats{
		Listener: u.key.Listener, Addr: u.key.Addr, Up: u.health.up, Admin: AdminState(u.admin.Load()),
		Inflight: u.inflight, Queued: u.queued, Limit: u.capLocked(), Rate: u.pace.ratePerSec(),
		Connected: u.st.connected, Failures: u.st.failures, QueueTO: u.st.queueTimeouts,
		Late: u.st.late, Rejected: u.st.rejected, Transitions: u.st.transitions,
		Cuts: u.pace.cuts, Checks: u.st.checks, CheckFails: u.st.checkFails,
		LatencyCount: u.latCount, LatencySum: u.latSum, LatencyBuckets: u.lat,
	}
}

// capLocked is how many connects may be in flight to u now: the pacer's
// limit while up, one trial while down (none while a check owns recovery).
func (u *Upstream) capLocked() int {
	if u.health.up {
		return u.pace.cap()
	}
	if u.check != nil {
		return 0
	}
	return 1
}

// eligibleLocked reports whether a request may be routed to u at now.
func (u *Upstream) eligibleLocked(now time.Time) bool {
	if AdminState(u.admin.Load()) != Enabled {
		return false // drained or disabled by an operator: no new session
	}
	if u.health.up {
		return true
	}
	// Down: one trial at a time once the back-off is over, and only with
	// nothing else waiting for it, so no more than one session pays for a
	// trial that fails. With an active check, only the check brings it back.
	return u.check == nil && !now.Before(u.health.retryAt) && u.inflight == 0 && u.head == nil
}

// HealthEvent is one health state change, reported through Config.OnHealth.
type HealthEvent struct {
	Key    UpstreamKey
	Up     bool
	Reason string        // why: "3 failed attempts (timeout)", "trial connect succeeded", "2 checks passed", ...
	Down   time.Duration // Up: how long it was down; down: the back-off before a trial (0 with an active check)
}
