package loadtest

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// testHookConnecting, if set, is called by every connect while it counts as
// outstanding, with the number outstanding including itself. Tests use it to
// observe and to hold connects in flight.
var testHookConnecting func(inflight int64)

// connector is the paced dialer shared by a run's workers. It applies, in
// order: the in-flight cap (a semaphore held for the duration of connect()),
// the rate cap (a slot schedule), then a dial with ConnectTimeout from the
// next source address.
//
// Go's dialer is itself non-blocking underneath: connect() returns
// EINPROGRESS, the runtime poller waits for writability, then reads SO_ERROR,
// all under the timeout. It is used rather than netpoll's dialer because it
// can bind a local address (--source-ips).
type connector struct {
	target  string
	dialers []net.Dialer // one per source address; one zero-LocalAddr dialer without
	next    atomic.Uint64
	sem     chan struct{} // nil = no in-flight cap
	pace    *pacer        // nil = no rate cap

	inflight  atomic.Int64
	highWater atomic.Int64
}

func newConnector(cfg LoadConfig) (*connector, error) {
	srcs, err := ParseSourceIPs(cfg.SourceIPs)
	if err != nil {
		return nil, err
	}
	c := &connector{target: cfg.Target}
	mk := func(local net.Addr) net.Dialer {
		return net.Dialer{Timeout: cfg.ConnectTimeout, LocalAddr: local, Control: bindNoPort, KeepAlive: -1}
	}
	if len(srcs) == 0 {
		c.dialers = []net.Dialer{mk(nil)}
	}
	for _, a := range srcs {
		c.dialers = append(c.dialers, mk(net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))))
	}
	if cfg.MaxInflightConnects > 0 {
		c.sem = make(chan struct{}, cfg.MaxInflightConnects)
	}
	if cfg.ConnectRate > 0 {
		c.pace = &pacer{interval: time.Duration(float64(time.Second) / cfg.ConnectRate)}
	}
	return c, nil
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT so that binding a source address
// defers the port choice to connect(), which can then reuse a port for
// different destinations: without it every bind consumes a port of the
// source address's ephemeral range for good.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	_ = serr // best effort: old kernels lack it, and binding still works
	return nil
}

// dial opens one connection and returns it with the time connect() took
// (queueing for the caps is excluded).
func (c *connector) dial(ctx context.Context) (*net.TCPConn, time.Duration, error) {
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		defer func() { <-c.sem }()
	}
	if c.pace != nil {
		if err := c.pace.wait(ctx); err != nil {
			return nil, 0, err
		}
	}
	d := &c.dialers[int(c.next.Add(1)-1)%len(c.dialers)]
	n := c.inflight.Add(1)
	for {
		hw := c.highWater.Load()
		if n <= hw || c.highWater.CompareAndSwap(hw, n) {
			break
		}
	}
	if h := testHookConnecting; h != nil {
		h(n)
	}
	t0 := time.Now()
	conn, err := d.DialContext(ctx, "tcp", c.target)
	dt := time.Since(t0)
	c.inflight.Add(-1)
	if err != nil {
		return nil, dt, err
	}
	return conn.(*net.TCPConn), dt, nil
}

// pacer hands out connect start times interval apart. A caller that falls
// behind does not earn a burst: missed slots are dropped, so R is a ceiling.
type pacer struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time // mu guards next
}

func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	now := time.Now()
	t := p.next
	if t.Before(now) {
		t = now
	}
	p.next = t.Add(p.interval)
	p.mu.Unlock()
	d := t.Sub(now)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
