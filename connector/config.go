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
	Queue          int           // total queued (not yet in flight) requests over all workers; 0 = 4096
	ConnectTimeout time.Duration // per attempt; 0 = 5s
	NoDelay        bool          // set TCP_NODELAY on connected sockets
	Tick           time.Duration // wheel resolution; 0 = 10ms
}

// Defaults applied for zero fields.
const (
	DefaultWorkers        = 2
	DefaultMaxInflight    = 32
	DefaultQueue          = 4096
	DefaultConnectTimeout = 5 * time.Second
	DefaultTick           = 10 * time.Millisecond
)

// Upper bounds: beyond them a value is a typo, not a tuning choice. The
// whole point of the pool is to be small (see doc.go).
const (
	maxWorkers     = 64
	maxMaxInflight = 1 << 16
	maxQueue       = 1 << 24
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
	}
	d := c.withDefaults()
	if d.Tick > d.ConnectTimeout {
		return bad("tick", d.Tick, fmt.Sprintf("coarser than connect_timeout %v", d.ConnectTimeout))
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
	return c
}
