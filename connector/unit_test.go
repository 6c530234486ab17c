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
