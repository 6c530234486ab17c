package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// chunkPool holds the 64 KiB read buffers of bulk streams.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, patternChunk); return &b }}

// bulk dials Streams connections, then streams the pattern on all of them for
// Duration in the configured direction and verifies every byte read.
func (r *runner) bulk(ctx context.Context) []StreamResult {
	conns := make([]*net.TCPConn, r.cfg.Streams)
	for i := range conns {
		c, ct, err := r.conn.dial(ctx)
		if err != nil {
			r.rec.end(&outcome{connect: ct, err: fmt.Errorf("connect %s: %w", r.cfg.Target, err)})
			continue
		}
		r.rec.connectOnly(ct)
		if b := r.cfg.ExpectBanner; b != "" {
			scratch := make([]byte, len(b))
			_ = c.SetDeadline(time.Now().Add(r.cfg.IOTimeout))
			if err := readExact(c, scratch, []byte(b)); err != nil {
				c.Close()
				r.rec.end(&outcome{local: localAddr(c), err: fmt.Errorf("banner: %w", err)})
				continue
			}
			_ = c.SetDeadline(time.Time{})
		}
		conns[i] = c
	}
	out := make([]StreamResult, len(conns))
	start := time.Now()
	stop := start.Add(r.cfg.Duration)
	var wg sync.WaitGroup
	for i, c := range conns {
		if c == nil {
			out[i].Error = KindOther
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			st := &out[i]
			err := r.stream(ctx, c, stop, st)
			elapsed := time.Since(start).Seconds()
			st.BitsPerSec = float64(st.BytesSent+st.BytesReceived) * 8 / elapsed
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				st.Error = Classify(err)
			}
			r.rec.end(&outcome{began: start, sent: st.BytesSent, rcvd: st.BytesReceived, local: localAddr(c), err: err})
		}()
	}
	wg.Wait()
	r.bulkElapsed = time.Since(start)
	return out
}

// stream runs one bulk stream until stop.
func (r *runner) stream(ctx context.Context, c *net.TCPConn, stop time.Time, st *StreamResult) error {
	// Abort promptly when ctx ends: a past deadline wakes blocked I/O.
	defer context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })()
	switch r.cfg.Direction {
	case DirUp:
		return writePattern(c, stop, &st.BytesSent, nil, &r.rec.live)
	case DirDown:
		_ = c.SetReadDeadline(stop)
		err := readPattern(c, 0, &st.BytesReceived, &r.rec.live)
		if errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(stop) {
			err = nil // the normal end of a down stream
		}
		return err
	default: // both: write until stop, then read until every byte is back
		var sent atomic.Uint64
		werr := make(chan error, 1)
		go func() { werr <- writePattern(c, stop, &st.BytesSent, &sent, &r.rec.live) }()
		var rcvd uint64
		rerr := readPatternUntil(c, &rcvd, &r.rec.live, func() (uint64, bool) {
			select {
			case err := <-werr:
				werr <- err
				_ = c.SetReadDeadline(time.Now().Add(r.cfg.IOTimeout))
				return sent.Load(), true
			default:
				return 0, false
			}
		})
		st.BytesReceived = rcvd
		err := <-werr
		if rerr != nil {
			return rerr
		}
		return err
	}
}

// writePattern writes the pattern in 64 KiB chunks until stop. total is the
// caller's counter; shared, if not nil, mirrors it for a concurrent reader;
// live counts the bytes of all streams for the progress line.
func writePattern(c *net.TCPConn, stop time.Time, total *uint64, shared, live *atomic.Uint64) error {
	_ = c.SetWriteDeadline(stop)
	var off uint64
	defer func() {
		*total = off
		if shared != nil {
			shared.Store(off)
		}
	}()
	for {
		n, err := c.Write(patternSlice(off, patternChunk))
		off += uint64(n)
		live.Add(uint64(n))
		if shared != nil {
			shared.Store(off)
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(stop) {
				return nil
			}
			return err
		}
	}
}

// readPattern reads and verifies the pattern from stream offset off until
// EOF or an error; total counts verified bytes.
func readPattern(c *net.TCPConn, off uint64, total *uint64, live *atomic.Uint64) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if !patternCheck(off, buf[:n]) {
				return fmt.Errorf("at offset %d: %w", off, ErrMismatch)
			}
			off += uint64(n)
			*total = off
			live.Add(uint64(n))
		}
		if err == io.EOF {
			return fmt.Errorf("after %d bytes: %w", off, ErrShort)
		}
		if err != nil {
			return err
		}
	}
}

// readPatternUntil reads and verifies the echoed pattern until it has read
// the number of bytes done() reports once the writer has finished.
func readPatternUntil(c *net.TCPConn, total *uint64, live *atomic.Uint64, done func() (uint64, bool)) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	var off uint64
	want, final := uint64(0), false
	for {
		if !final {
			want, final = done()
		}
		if final && off >= want {
			if off > want {
				return fmt.Errorf("%d bytes back for %d sent: %w", off, want, ErrMismatch)
			}
			return nil
		}
		if !final {
			// Wake up now and then to notice the writer finishing.
			_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		}
		n, err := c.Read(buf)
		if n > 0 {
			if !patternCheck(off, buf[:n]) {
				return fmt.Errorf("at offset %d: %w", off, ErrMismatch)
			}
			off += uint64(n)
			*total = off
			live.Add(uint64(n))
		}
		switch {
		case err == nil:
		case err == io.EOF:
			return fmt.Errorf("after %d bytes: %w", off, ErrShort)
		case errors.Is(err, os.ErrDeadlineExceeded) && !final:
		default:
			return err
		}
	}
}
