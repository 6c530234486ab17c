package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Run executes one load test and returns its result. Errors of individual
// sessions are counted in Result.Errors, not returned; Run returns an error
// only for a bad config or when ctx ends before the run does (then with the
// partial result).
func Run(ctx context.Context, cfg LoadConfig) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	raiseNoFile()
	conn, err := newConnector(cfg)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, conn: conn, rec: newRecorder()}
	r.bufs.New = func() any { b := make([]byte, r.sessionBufLen()); return &b }
	res := &Result{Mode: cfg.Mode, Target: cfg.Target, Rate: cfg.Rate}
	if cfg.RecordPath != "" {
		rw, err := createRecordWriter(cfg.RecordPath, RecordHeader{
			Mode: cfg.Mode, Target: cfg.Target, BaseUnixNano: r.rec.base.UnixNano(),
			Proc: cfg.Proc, Procs: max(cfg.Procs, 1), Rate: cfg.Rate,
		})
		if err != nil {
			return nil, err
		}
		r.rec.rw = rw
	}

	stopProgress := startProgress(cfg, r.rec)
	ivs := startIntervals(cfg, r.rec, progressPlain(cfg))
	start := r.rec.base
	switch cfg.Mode {
	case ModeRR:
		r.sessions(ctx, r.rrSession, res)
	case ModeStorm:
		r.sessions(ctx, r.stormSession, res)
	case ModeBulk:
		res.Streams = r.bulk(ctx)
	case ModeIdle:
		r.idle(ctx, res)
	}
	res.Elapsed = time.Since(start)
	res.Intervals = ivs.stop()
	stopProgress()
	if cfg.Mode == ModeBulk && len(res.Streams) > 0 {
		// Bulk rates are over the streaming time, not the connect time.
		res.Elapsed = r.bulkElapsed
	}
	r.rec.fill(res)
	res.MaxInflightConnectsSeen = conn.highWater.Load()
	var recErr error
	if r.rec.rw != nil {
		r.rec.mu.Lock()
		recErr = r.rec.rw.close()
		r.rec.rw = nil
		r.rec.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadtest: run interrupted: %w", err)
	}
	return res, recErr
}

// runner is one Run's shared state; workers touch it only through the
// connector, the recorder and atomics.
type runner struct {
	cfg  LoadConfig
	conn *connector
	rec  *recorder
	// bufs pools session buffers (payload out + payload in + banner), so a
	// worker holds one only while a session runs and idle sessions hold none.
	bufs sync.Pool

	bulkElapsed time.Duration // written by bulk before it returns
	deadline    time.Time     // rr with a duration: no session or round trip starts after it
}

func (r *runner) sessionBufLen() int { return 2*r.cfg.Size + len(r.cfg.ExpectBanner) }

// sessionFunc runs one session that was due at intended and reports it to
// the recorder.
// sched is the worker's request schedule in open-loop keep-alive (nil
// otherwise).
type sessionFunc func(ctx context.Context, id uint64, intended time.Time, sched *schedule) error

// sessions runs the session modes: closed loop (Concurrency workers each
// loop claim, run, record) or, with Rate, open loop (openLoop). It stops
// claiming when Sessions have been claimed or Duration has passed;
// sessions already started finish (bounded by their own timeouts).
// Cancelling ctx aborts them, and what they fail with then is not counted.
func (r *runner) sessions(ctx context.Context, fn sessionFunc, res *Result) {
	var (
		next     atomic.Uint64
		deadline time.Time
		wg       sync.WaitGroup
	)
	if r.cfg.Mode == ModeRR && r.cfg.Duration > 0 {
		deadline = time.Now().Add(r.cfg.Duration)
		r.deadline = deadline
	}
	if r.cfg.Rate > 0 && r.cfg.Requests <= 1 {
		r.openLoop(ctx, fn, deadline, res)
		return
	}
	claim := func() (uint64, bool) {
		if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			return 0, false
		}
		id := next.Add(1) - 1
		if r.cfg.Sessions > 0 && id >= uint64(r.cfg.Sessions) {
			return 0, false
		}
		return id, true
	}
	workers := r.cfg.Concurrency
	if r.cfg.Sessions > 0 {
		workers = min(workers, r.cfg.Sessions)
	}
	// Open-loop keep-alive: each connection's requests are due on its own
	// schedule, the workers' interleaved, R a second in all.
	var scheds []*schedule
	t0 := time.Now()
	if r.cfg.Rate > 0 {
		period := time.Duration(float64(time.Second) / r.cfg.Rate)
		for w := range workers {
			scheds = append(scheds, &schedule{next: t0.Add(time.Duration(w) * period), step: time.Duration(workers) * period, deadline: deadline})
		}
	}
	for w := range workers {
		var sched *schedule
		if scheds != nil {
			sched = scheds[w]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if sched.over() {
					return
				}
				id, ok := claim()
				if !ok {
					return
				}
				if err := fn(ctx, id, time.Now(), sched); err != nil && ctx.Err() != nil {
					return // aborted, not a result
				}
			}
		}()
	}
	wg.Wait()
	if scheds != nil && ctx.Err() == nil {
		r.keepAliveShortfall(t0, scheds, res)
	}
}

// rrInlineWrite is the largest rr payload written before reading; larger
// ones are written concurrently with the read.
const rrInlineWrite = 32 << 10

// rrSession: connect, [banner], write Size bytes, read them back, verify,
// close.
func (r *runner) rrSession(ctx context.Context, id uint64, intended time.Time, sched *schedule) (err error) {
	o := outcome{intended: intended, began: time.Now()}
	var ct, ttfb, rtt time.Duration
	var sent, rcvd uint64
	defer func() {
		if ctx.Err() == nil {
			o.connect, o.ttfb, o.rtt, o.sent, o.rcvd, o.err = ct, ttfb, rtt, sent, rcvd, err
			r.rec.end(&o)
		}
	}()
	c, ct, err := r.conn.dial(ctx)
	if err != nil {
		return fmt.Errorf("connect %s: %w", r.cfg.Target, err)
	}
	defer c.Close()
	o.local = localAddr(c)
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	buf := *bp
	connected := time.Now()
	_ = c.SetDeadline(connected.Add(r.cfg.IOTimeout))
	if b := r.cfg.ExpectBanner; b != "" {
		if err = readExact(c, buf[2*r.cfg.Size:], []byte(b)); err != nil {
			return fmt.Errorf("banner: %w", err)
		}
		rcvd += uint64(len(b))
		ttfb = time.Since(connected)
	}
	out, in := buf[:r.cfg.Size], buf[r.cfg.Size:2*r.cfg.Size]
	fillSession(out, id)
	if r.cfg.Requests <= 1 {
		var first time.Duration
		first, rtt, err = r.roundTrip(c, out, in, &sent, &rcvd)
		if ttfb == 0 {
			ttfb = first
		}
		if err == nil {
			o.requests = 1
		}
		return err
	}
	o.trips, o.perRequest = true, sched != nil
	// Keep-alive: many round trips on this connection, each one's RTT
	// recorded as it completes; no new one starts after the run's end. In
	// open loop each waits for its due time on the worker's schedule.
	for req := 0; req < r.cfg.Requests; req++ {
		if !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
			break
		}
		var due time.Time
		if sched != nil {
			var ok bool
			if due, ok = sched.wait(ctx); !ok {
				break
			}
		}
		_ = c.SetDeadline(time.Now().Add(r.cfg.IOTimeout))
		first, d, rerr := r.roundTrip(c, out, in, &sent, &rcvd)
		if ttfb == 0 {
			ttfb = first
		}
		if rerr != nil {
			return rerr
		}
		o.requests++
		rtt = max(rtt, d)
		if ctx.Err() == nil {
			r.rec.roundTrip(d, due)
		}
	}
	return nil
}

// roundTrip writes out and reads its echo into in, verifying it; it returns
// the time to the first byte back and the round trip.
func (r *runner) roundTrip(c net.Conn, out, in []byte, sent, rcvd *uint64) (ttfb, rtt time.Duration, err error) {
	t0 := time.Now()
	if len(out) <= rrInlineWrite {
		n, werr := c.Write(out)
		*sent += uint64(n)
		if werr != nil {
			return 0, 0, fmt.Errorf("write: %w", werr)
		}
	} else {
		// A payload larger than the socket buffers, sent before reading,
		// would deadlock against a relay that applies backpressure: write
		// from a second goroutine while this one reads the echo.
		type wres struct {
			n   int
			err error
		}
		wc := make(chan wres, 1)
		go func() { n, err := c.Write(out); wc <- wres{n, err} }()
		defer func() {
			if err != nil {
				// The read side failed: unblock the writer now rather
				// than at the I/O deadline. Its own error is then moot.
				_ = c.SetWriteDeadline(time.Now())
			}
			w := <-wc // before the buffer goes back to the pool
			*sent += uint64(w.n)
			if err == nil && w.err != nil {
				err = fmt.Errorf("write: %w", w.err)
			}
		}()
	}
	got := 0
	for got < len(in) {
		m, rerr := c.Read(in[got:])
		if got == 0 && m > 0 && ttfb == 0 {
			ttfb = time.Since(t0)
		}
		got += m
		*rcvd += uint64(m)
		if rerr != nil {
			if rerr == io.EOF {
				rerr = ErrShort
			}
			return ttfb, 0, fmt.Errorf("read %d/%d: %w", got, len(in), rerr)
		}
	}
	rtt = time.Since(t0)
	if !bytes.Equal(in, out) {
		return ttfb, rtt, ErrMismatch
	}
	return ttfb, rtt, nil
}

// stormSession: connect, [banner], close.
func (r *runner) stormSession(ctx context.Context, _ uint64, intended time.Time, _ *schedule) (err error) {
	o := outcome{intended: intended, began: time.Now()}
	var ct, ttfb time.Duration
	var rcvd uint64
	defer func() {
		if ctx.Err() == nil {
			o.connect, o.ttfb, o.rcvd, o.err = ct, ttfb, rcvd, err
			r.rec.end(&o)
		}
	}()
	c, ct, err := r.conn.dial(ctx)
	if err != nil {
		return fmt.Errorf("connect %s: %w", r.cfg.Target, err)
	}
	defer c.Close()
	o.local = localAddr(c)
	if b := r.cfg.ExpectBanner; b != "" {
		bp := r.bufs.Get().(*[]byte)
		defer r.bufs.Put(bp)
		t0 := time.Now()
		_ = c.SetDeadline(t0.Add(r.cfg.IOTimeout))
		if err = readExact(c, *bp, []byte(b)); err != nil {
			return fmt.Errorf("banner: %w", err)
		}
		ttfb = time.Since(t0)
		rcvd = uint64(len(b))
	}
	return nil
}

// readExact reads len(want) bytes into scratch and compares them with want.
func readExact(c net.Conn, scratch, want []byte) error {
	got := scratch[:len(want)]
	if _, err := io.ReadFull(c, got); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: %v", ErrShort, err)
		}
		return err
	}
	if !bytes.Equal(got, want) {
		return ErrMismatch
	}
	return nil
}

// localAddr is c's local address and port (for the session record).
func localAddr(c *net.TCPConn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
