//go:build linux

package connector

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// NumLatencyBuckets is the size of Stats.LatencyBuckets.
const NumLatencyBuckets = 24

// LatencyBucketBound returns the inclusive upper bound of latency bucket i:
// 2^i microseconds (1µs, 2µs, 4µs … ≈4.2s); the last bucket also holds
// everything slower.
func LatencyBucketBound(i int) time.Duration {
	return time.Duration(1<<i) * time.Microsecond
}

func latencyBucket(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us <= 1 {
		return 0
	}
	b := bits.Len64(us - 1) // smallest i with 2^i ≥ us
	return min(b, NumLatencyBuckets-1)
}

// Stats is a snapshot of a Pool's counters. Each field is read atomically,
// the snapshot as a whole is not: counters may be a few events apart.
type Stats struct {
	Queued            int   // requests waiting for a connect slot, all upstreams
	Inflight          []int // requests being connected, per worker
	InflightHighWater []int // the most ever in flight at once, per worker (≤ MaxInflight)

	Submitted     uint64 // accepted by Submit
	QueueRejected uint64 // refused by Submit with ErrQueueFull (the pool's queue or an upstream's)
	DownRejected  uint64 // refused by Submit with ErrUpstreamsDown: every candidate was down
	DownFailed    uint64 // completed with ErrUpstreamsDown: the remaining candidates went down while queued
	Late          uint64 // attempts unanswered past the late threshold (lost SYNs); re-sent with adaptive pacing
	Wakeups       uint64 // worker wake-ups posted by Submit and Cancel (an eventfd write at most each); ≪ Submitted under load

	Attempts  uint64             // connect attempts started
	Failures  [NumClasses]uint64 // failed attempts by Class (a failover counts each)
	Connected uint64             // requests completed with a socket
	Failed    uint64             // requests completed with a connect error (all tries failed)
	Canceled  uint64             // requests completed with ErrCanceled
	Closed    uint64             // requests completed with ErrClosed

	// Submit-to-connected latency of the Connected requests.
	LatencyCount   uint64
	LatencySum     time.Duration
	LatencyBuckets [NumLatencyBuckets]uint64 // see LatencyBucketBound
}

// Completed is the number of handler calls so far.
func (s Stats) Completed() uint64 { return s.Connected + s.Failed + s.Canceled + s.Closed }

// counters are written by one worker goroutine and read by Stats: atomics
// only so that readers are race-free; writers never contend.
type counters struct {
	attempts, connected, failed, canceled, closed atomic.Uint64
	wakeups, late, downFailed                     atomic.Uint64
	failures                                      [NumClasses]atomic.Uint64
	latCount, latSum                              atomic.Uint64
	latBuckets                                    [NumLatencyBuckets]atomic.Uint64
	inflight, high                                atomic.Int64
}

func (c *counters) observe(d time.Duration) {
	c.latCount.Add(1)
	c.latSum.Add(uint64(d))
	c.latBuckets[latencyBucket(d)].Add(1)
}

func (c *counters) addTo(s *Stats) {
	s.Attempts += c.attempts.Load()
	s.Connected += c.connected.Load()
	s.Failed += c.failed.Load()
	s.Canceled += c.canceled.Load()
	s.Closed += c.closed.Load()
	s.Wakeups += c.wakeups.Load()
	s.Late += c.late.Load()
	s.DownFailed += c.downFailed.Load()
	for i := range c.failures {
		s.Failures[i] += c.failures[i].Load()
	}
	s.LatencyCount += c.latCount.Load()
	s.LatencySum += time.Duration(c.latSum.Load())
	for i := range c.latBuckets {
		s.LatencyBuckets[i] += c.latBuckets[i].Load()
	}
	s.Inflight = append(s.Inflight, int(c.inflight.Load()))
	s.InflightHighWater = append(s.InflightHighWater, int(c.high.Load()))
}
