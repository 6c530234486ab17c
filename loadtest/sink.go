package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Sink modes.
const (
	SinkEcho    = "echo"    // write back every byte received
	SinkDiscard = "discard" // read and drop
	SinkBanner  = "banner"  // send Banner on open (server speaks first), then echo
	SinkSource  = "source"  // stream the pattern (see PatternAt) to the client until it closes
)

// DefaultBanner is what a banner sink sends when SinkConfig.Banner is empty.
const DefaultBanner = "220 relayd-sink ready\r\n"

// sourceHighWater bounds the bytes a source-mode connection queues in gnet's
// outbound buffer. gnet has no "writable" callback, so the pump refills only
// while the buffer is below this mark and parks otherwise; the engine ticker
// re-kicks parked connections every sourceTick. 4 MiB at 10 Gbit/s lasts
// ~3 ms, longer than one tick, so the socket never runs dry between kicks.
const (
	sourceHighWater = 4 << 20
	sourceTick      = time.Millisecond
)

// SinkConfig configures StartSink. The zero value of every field but Listen
// is usable.
type SinkConfig struct {
	// Listen is host:port; port 0 picks a free port (see Sink.Addr).
	Listen string
	// Mode is echo, discard, banner or source; "" means echo.
	Mode string
	// Loops is the number of gnet event loops; 0 means runtime.NumCPU().
	Loops int
	// Balance accepts on one socket and gives each connection to the loop
	// with the fewest (gnet's LeastConnections) instead of one SO_REUSEPORT
	// socket per loop: a few long streams then land on different loops, so
	// their per-stream rates measure the system under test, not the
	// kernel's hash of them onto the sink's loops.
	Balance bool
	// Banner is what banner mode sends first; "" means DefaultBanner.
	Banner string
}

// Validate reports a config StartSink would refuse.
func (c SinkConfig) Validate() error {
	switch c.Mode {
	case "", SinkEcho, SinkDiscard, SinkBanner, SinkSource:
	default:
		return fmt.Errorf("%w: sink mode %q", ErrBadConfig, c.Mode)
	}
	if c.Loops < 0 {
		return fmt.Errorf("%w: sink loops %d", ErrBadConfig, c.Loops)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: sink listen %q: %v", ErrBadConfig, c.Listen, err)
	}
	return nil
}

// SinkStats are exact counters: every accepted connection is counted once in
// Accepted and, once gnet has closed it, once in Closed. BytesOut counts bytes
// handed to the connection's writer (gnet flushes them or drops them on close).
type SinkStats struct {
	Accepted uint64 `json:"accepted"`
	Closed   uint64 `json:"closed"`
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
}

// Sink is a running gnet engine. Its methods are safe for concurrent use.
type Sink struct {
	handler *sinkHandler
	addr    string
	done    chan struct{} // closed when gnet.Run has returned
	runErr  error         // set before done is closed

	closeOnce sync.Once
	closeErr  error
}

// StartSink binds cfg.Listen and runs the gnet engine (multicore, one
// SO_REUSEPORT listener per loop) in the background. It returns once the
// listening sockets exist, so a connect right after it succeeds. ctx bounds
// only the start; stop the sink with Close.
func StartSink(ctx context.Context, cfg SinkConfig) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Mode == "" {
		cfg.Mode = SinkEcho
	}
	if cfg.Loops == 0 {
		cfg.Loops = runtime.NumCPU()
	}
	if cfg.Mode == SinkBanner && cfg.Banner == "" {
		cfg.Banner = DefaultBanner
	}
	raiseNoFile()

	addr, err := resolveListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	h := &sinkHandler{mode: cfg.Mode, banner: []byte(cfg.Banner), booted: make(chan gnet.Engine, 1)}
	s := &Sink{handler: h, addr: addr, done: make(chan struct{})}
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(cfg.Loops),
		gnet.WithReusePort(!cfg.Balance),
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(zap.NewNop().Sugar()),
	}
	if cfg.Mode == SinkSource {
		opts = append(opts, gnet.WithTicker(true))
	}
	if cfg.Balance {
		opts = append(opts, gnet.WithLoadBalancing(gnet.LeastConnections))
	}
	go func() {
		s.runErr = gnet.Run(h, "tcp://"+addr, opts...)
		close(s.done)
	}()
	select {
	case eng := <-h.booted:
		h.eng = eng
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("loadtest: sink on %s: %w", addr, s.runErr)
	case <-ctx.Done():
		// The engine may still boot; wait for it so no goroutine outlives us.
		select {
		case eng := <-h.booted:
			h.eng = eng
			_ = s.Close()
		case <-s.done:
		}
		return nil, ctx.Err()
	}
}

// resolveListen turns port 0 into a concrete free port. gnet binds one
// SO_REUSEPORT socket per loop to the same address, so "port 0" would give
// each loop a different port.
func resolveListen(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	if port != "0" && port != "" {
		return listen, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("loadtest: pick sink port: %w", err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// Addr is the bound host:port.
func (s *Sink) Addr() string { return s.addr }

// Stats returns a snapshot of the counters.
func (s *Sink) Stats() SinkStats {
	h := s.handler
	return SinkStats{
		Accepted: h.accepted.Load(),
		Closed:   h.closed.Load(),
		BytesIn:  h.bytesIn.Load(),
		BytesOut: h.bytesOut.Load(),
	}
}

// WaitIdle polls (every millisecond) until every accepted connection has been
// closed and at least minAccepted were accepted, or ctx ends. Tests use it
// to read exact counters after a load run: the sink sees the client's FIN
// some time after the client returns.
func (s *Sink) WaitIdle(ctx context.Context, minAccepted uint64) (SinkStats, error) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		st := s.Stats()
		if st.Accepted >= minAccepted && st.Closed == st.Accepted {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("loadtest: sink not idle (%+v): %w", st, ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops the engine, closing every connection, and waits for gnet's
// goroutines to exit. Safe to call more than once.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		// Engine.Stop polls for the end every 500 ms; gnet.Run returning
		// (s.done) is the precise signal, so stop Stop's wait as soon as
		// it comes.
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- s.handler.eng.Stop(ctx) }()
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case <-s.done:
		case err := <-stopped:
			if err != nil {
				s.closeErr = fmt.Errorf("loadtest: stop sink: %w", err)
			}
			select {
			case <-s.done:
			case <-t.C:
				s.closeErr = errors.New("loadtest: stop sink: engine did not exit in 30s")
			}
		case <-t.C:
			s.closeErr = errors.New("loadtest: stop sink: engine did not exit in 30s")
		}
		cancel()
		<-stopped
	})
	return s.closeErr
}

// sinkHandler is the gnet event handler. Counters are atomics because
// several loops update them; per-connection state lives in Conn.Context and
// is touched only by the connection's own loop.
type sinkHandler struct {
	gnet.BuiltinEventEngine
	mode   string
	banner []byte
	booted chan gnet.Engine
	eng    gnet.Engine

	accepted, closed, bytesIn, bytesOut atomic.Uint64

	// parked holds source-mode connections whose outbound buffer was full
	// at their last refill; OnTick wakes them. mu guards parked.
	mu     sync.Mutex
	parked map[gnet.Conn]struct{}
}

// sourceState is a source-mode connection's stream position, touched only
// by the connection's own loop.
type sourceState struct {
	off uint64
}

func (h *sinkHandler) OnBoot(eng gnet.Engine) gnet.Action {
	h.booted <- eng
	return gnet.None
}

func (h *sinkHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	h.accepted.Add(1)
	switch h.mode {
	case SinkBanner:
		h.bytesOut.Add(uint64(len(h.banner)))
		return h.banner, gnet.None
	case SinkSource:
		st := &sourceState{}
		c.SetContext(st)
		h.pump(c, st)
	}
	return nil, gnet.None
}

func (h *sinkHandler) OnClose(c gnet.Conn, _ error) gnet.Action {
	if _, ok := c.Context().(*sourceState); ok {
		h.mu.Lock()
		delete(h.parked, c)
		h.mu.Unlock()
	}
	h.closed.Add(1)
	return gnet.None
}

func (h *sinkHandler) OnTraffic(c gnet.Conn) gnet.Action {
	if st, ok := c.Context().(*sourceState); ok {
		// Client bytes or a wake-up from OnTick: refill either way.
		h.pump(c, st)
	}
	n := c.InboundBuffered()
	if n == 0 {
		return gnet.None
	}
	h.bytesIn.Add(uint64(n))
	switch h.mode {
	case SinkEcho, SinkBanner:
		buf, err := c.Next(-1)
		if err != nil {
			return gnet.Close
		}
		// Write copies into gnet's outbound buffer what the socket does not take.
		if _, err := c.Write(buf); err != nil {
			return gnet.Close
		}
		h.bytesOut.Add(uint64(len(buf)))
	default: // discard, source: the client's bytes are dropped
		_, _ = c.Discard(-1)
	}
	return gnet.None
}

// pump writes the next chunks of the pattern while gnet's outbound buffer is
// below sourceHighWater, then parks. It runs on the connection's loop.
func (h *sinkHandler) pump(c gnet.Conn, st *sourceState) {
	for c.OutboundBuffered() < sourceHighWater {
		chunk := patternSlice(st.off, patternChunk)
		if _, err := c.Write(chunk); err != nil {
			return
		}
		st.off += uint64(len(chunk))
		h.bytesOut.Add(uint64(len(chunk)))
	}
	h.mu.Lock()
	if h.parked == nil {
		h.parked = make(map[gnet.Conn]struct{})
	}
	h.parked[c] = struct{}{}
	h.mu.Unlock()
}

// OnTick re-kicks parked source connections on their own loops.
func (h *sinkHandler) OnTick() (time.Duration, gnet.Action) {
	if h.mode != SinkSource {
		return time.Hour, gnet.None
	}
	h.mu.Lock()
	kick := make([]gnet.Conn, 0, len(h.parked))
	for c := range h.parked {
		kick = append(kick, c)
		delete(h.parked, c)
	}
	h.mu.Unlock()
	for _, c := range kick {
		// Wake runs OnTraffic on c's loop, which refills; gnet ignores the
		// wake-up if c has closed meanwhile.
		_ = c.Wake(nil)
	}
	return sourceTick, gnet.None
}

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit. Go does this at
// start-up since 1.19; doing it again is cheap and documents the need.
func raiseNoFile() {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
	}
}
