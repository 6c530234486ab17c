//go:build linux

package connector

import (
	"fmt"
	"time"
)

// Config configures a Pool. The zero value is the recommended setting.
type Config struct {
	Workers        int           // worker event loops; 0 = 2
	MaxInflight    int           // connects in flight per worker; 0 = 32
	Queue          int           // total queued (not yet in flight) requests, all upstreams; 0 = 16384
	ConnectTimeout time.Duration // per attempt, queue wait included; 0 = 5s
	NoDelay        bool          // set TCP_NODELAY on connected sockets
	Tick           time.Duration // wheel resolution; 0 = 10ms (the pace has its own finer alarm)

	// Per upstream (see Upstream). Requests by Addrs (no Upstreams) share
	// the global caps only.
	Pacing              string        // PacingAdaptive ("" means it) or PacingFixed
	UpstreamMaxInflight int           // connects in flight per upstream: the fixed cap, or the adaptive limit's ceiling; 0 = 32
	UpstreamQueue       int           // requests waiting per upstream; 0 = 8192
	FailAfter           int           // consecutive failed attempts that mark an upstream down; 0 = 3, < 0 = never (passive health off)
	Backoff             time.Duration // first down period; doubles while trials fail; 0 = 1s
	BackoffMax          time.Duration // the longest down period; 0 = 30s

	// OnHealth, if set, is told of every upstream health change, once per
	// change, on a worker goroutine: it must not block (the daemon logs).
	OnHealth func(HealthEvent)
}

// Defaults applied for zero fields.
const (
	DefaultWorkers             = 2
	DefaultMaxInflight         = 32
	DefaultQueue               = 16384
	DefaultConnectTimeout      = 5 * time.Second
	DefaultTick                = 10 * time.Millisecond
	DefaultUpstreamMaxInflight = 32
	DefaultUpstreamQueue       = 8192
	DefaultFailAfter           = 3
	DefaultBackoff             = time.Second
	DefaultBackoffMax          = 30 * time.Second
)

// Upper bounds: beyond them a value is a typo, not a tuning choice. The
// whole point of the pool is to be small (see doc.go).
const (
	maxWorkers     = 64
	maxMaxInflight = 1 << 16
	maxQueue       = 1 << 24
	maxFailAfter   = 1000
	maxBackoff     = 24 * time.Hour
)

// Validate reports the first bad field, naming it by its config key.
func (c Config) Validate() error {
	bad := func(key string, v any, why string) error {
		return fmt.Errorf("%w: connector.%s = %v: %s", ErrInvalidConfig, key, v, why)
	}
	switch {
	case c.Workers < 0 || c.Workers > maxWorkers:
		return bad("workers", c.Workers, fmt.Sprintf("must be 0..%d (0 means %d)", maxWorkers, DefaultWorkers))
	case c.MaxInflight < 0 || c.MaxInflight > maxMaxInflight:
		return bad("max_inflight", c.MaxInflight, fmt.Sprintf("must be 0..%d (0 means %d)", maxMaxInflight, DefaultMaxInflight))
	case c.Queue < 0 || c.Queue > maxQueue:
		return bad("queue", c.Queue, fmt.Sprintf("must be 0..%d (0 means %d)", maxQueue, DefaultQueue))
	case c.ConnectTimeout < 0:
		return bad("connect_timeout", c.ConnectTimeout, "must not be negative (0 means 5s)")
	case c.Tick < 0:
		return bad("tick", c.Tick, "must not be negative (0 means 10ms)")
	case c.Pacing != "" && c.Pacing != PacingAdaptive && c.Pacing != PacingFixed:
		return bad("pacing", c.Pacing, "must be adaptive or fixed")
	case c.UpstreamMaxInflight < 0 || c.UpstreamMaxInflight > maxMaxInflight:
		return bad("upstream_max_inflight", c.UpstreamMaxInflight, fmt.Sprintf("must be 0..%d (0 means %d)", maxMaxInflight, DefaultUpstreamMaxInflight))
	case c.UpstreamQueue < 0 || c.UpstreamQueue > maxQueue:
		return bad("upstream_queue", c.UpstreamQueue, fmt.Sprintf("must be 0..%d (0 means %d)", maxQueue, DefaultUpstreamQueue))
	case c.FailAfter > maxFailAfter:
		return bad("health.fail_after", c.FailAfter, fmt.Sprintf("must be at most %d", maxFailAfter))
	case c.Backoff < 0 || c.Backoff > maxBackoff:
		return bad("health.backoff", c.Backoff, "must be 0..24h (0 means 1s)")
	case c.BackoffMax < 0 || c.BackoffMax > maxBackoff:
		return bad("health.backoff_max", c.BackoffMax, "must be 0..24h (0 means 30s)")
	}
	d := c.withDefaults()
	if d.Tick > d.ConnectTimeout {
		return bad("tick", d.Tick, fmt.Sprintf("coarser than connect_timeout %v", d.ConnectTimeout))
	}
	if d.BackoffMax < d.Backoff {
		return bad("health.backoff_max", d.BackoffMax, fmt.Sprintf("shorter than health.backoff %v", d.Backoff))
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.Queue == 0 {
		c.Queue = DefaultQueue
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.Pacing == "" {
		c.Pacing = PacingAdaptive
	}
	if c.UpstreamMaxInflight == 0 {
		c.UpstreamMaxInflight = DefaultUpstreamMaxInflight
	}
	if c.UpstreamQueue == 0 {
		c.UpstreamQueue = DefaultUpstreamQueue
	}
	if c.FailAfter == 0 {
		c.FailAfter = DefaultFailAfter
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	return c
}
