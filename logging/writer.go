package logging

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxBatchBytes bounds one write to the output. Slots are released as soon
// as they are copied into the batch, before the write, so producers can
// refill the ring while the writer waits on the output.
const maxBatchBytes = 64 << 10

// linger is how long the writer waits after a producer woke it before it
// drains, so a steady trickle of entries costs producers at most one
// wake-up (a futex syscall in the runtime) per linger instead of one per
// entry, and the output gets batches instead of one write per line. The
// ring overflows during a linger only above RingSize/linger entries per
// second (8M/s with the defaults).
const linger = time.Millisecond

// run is the writer goroutine: the only reader of the ring and the only
// user of l.out. It exits after Close once the ring is empty.
func (l *Logger) run() {
	w := writer{
		l:        l,
		acc:      l.enc.Clone(),
		batch:    make([]byte, 0, maxBatchBytes+4096),
		last:     time.Now(),
		fastJSON: l.cfg.Format == "json",
	}
	w.accFields = []zapcore.Field{zap.Inline(&w.am)}
	ticker := time.NewTicker(l.cfg.DropReport)
	defer ticker.Stop()
	stopping := false
	spins := 0
	for {
		if w.drain() > 0 {
			spins = 0
			select { // a busy writer still reports drops
			case now := <-ticker.C:
				w.reportDrops(now)
			default:
			}
			continue
		}
		if l.r.pending() > 0 {
			// A producer has claimed the tail slot but not yet published
			// it (it was preempted between the two steps). It will finish
			// shortly; back off politely instead of sleeping on wake.
			spins++
			if spins < 64 {
				runtime.Gosched()
			} else {
				time.Sleep(20 * time.Microsecond)
			}
			continue
		}
		if stopping {
			w.finish()
			return
		}
		l.sleeping.Store(true)
		if l.r.pending() > 0 {
			l.sleeping.Store(false)
			continue
		}
		select {
		case <-l.wake:
			l.sleeping.Store(false)
			lingerOrStop(l.stop)
		case now := <-ticker.C:
			w.reportDrops(now)
		case <-l.stop:
			stopping = true
		}
		l.sleeping.Store(false)
	}
}

// lingerOrStop waits for linger, cut short by Close.
func lingerOrStop(stop <-chan struct{}) {
	t := time.NewTimer(linger)
	select {
	case <-t.C:
	case <-stop:
		t.Stop()
	}
}

// writer holds the writer goroutine's reusable state.
type writer struct {
	l         *Logger
	acc       zapcore.Encoder // clone of the base encoder for access lines
	am        accessMarshaler
	accFields []zapcore.Field
	batch     []byte
	n         uint64 // entries in batch
	fastJSON  bool   // JSON format: access lines use appendAccessJSON

	last        time.Time // last drop report
	lastDropped uint64
}

// drain moves published entries into the batch and writes it; it returns
// how many ring slots it took.
func (w *writer) drain() int {
	r := w.l.r
	w.batch = w.batch[:0]
	w.n = 0
	taken := 0
	for len(w.batch) < maxBatchBytes {
		s, ok := r.peek()
		if !ok {
			break
		}
		switch s.kind {
		case kindLog:
			w.batch = append(w.batch, s.buf...)
			w.n++
		case kindAccess:
			if w.appendAccess(&s.acc) {
				w.n++
			}
		}
		r.release(s)
		taken++
	}
	if taken == 0 {
		return 0
	}
	w.write()
	w.l.flushed.Store(r.tail.Load())
	w.notifyFlushers()
	return taken
}

func (w *writer) appendAccess(e *AccessEntry) bool {
	if w.fastJSON {
		w.batch = appendAccessJSON(w.batch, e)
		return true
	}
	w.am.e = e
	buf, err := w.acc.EncodeEntry(zapcore.Entry{
		Level:      zapcore.InfoLevel,
		Time:       e.Time,
		LoggerName: AccessLoggerName,
		Message:    e.Event.Message(),
	}, w.accFields)
	w.am.e = nil
	if err != nil {
		w.l.dropped.Add(1)
		return false
	}
	w.batch = append(w.batch, buf.Bytes()...)
	buf.Free()
	return true
}

func (w *writer) write() {
	if len(w.batch) == 0 {
		return
	}
	if _, err := w.l.out.Write(w.batch); err != nil {
		w.l.wErrs.Add(1)
		w.l.dropped.Add(w.n)
	} else {
		w.l.written.Add(w.n)
	}
	if cap(w.batch) > 4*maxBatchBytes { // an oversize line grew it
		w.batch = make([]byte, 0, maxBatchBytes+4096)
	}
}

func (w *writer) notifyFlushers() {
	l := w.l
	f := l.flushed.Load()
	l.mu.Lock()
	keep := l.waiters[:0]
	for _, fw := range l.waiters {
		if f >= fw.target {
			close(fw.ch)
		} else {
			keep = append(keep, fw)
		}
	}
	clear(l.waiters[len(keep):])
	l.waiters = keep
	l.mu.Unlock()
}

// reportDrops writes "dropped N log entries in the last P" when entries
// were dropped since the previous report. It is written directly, not
// through the ring, so it cannot itself be dropped for lack of room.
func (w *writer) reportDrops(now time.Time) {
	d := w.l.dropped.Load()
	delta := d - w.lastDropped
	elapsed := now.Sub(w.last)
	w.lastDropped, w.last = d, now
	if delta == 0 {
		return
	}
	if elapsed >= time.Second {
		elapsed = elapsed.Round(time.Second)
	} else {
		elapsed = elapsed.Round(time.Millisecond)
	}
	buf, err := w.acc.EncodeEntry(zapcore.Entry{
		Level:      zapcore.WarnLevel,
		Time:       now,
		LoggerName: "logging",
		Message:    fmt.Sprintf("dropped %d log entries in the last %s", delta, elapsed),
	}, []zapcore.Field{zap.Uint64("dropped", delta), zap.Uint64("dropped_total", d)})
	if err != nil {
		return
	}
	w.batch = append(w.batch[:0], buf.Bytes()...)
	buf.Free()
	w.n = 1
	w.write()
}

// finish runs once the ring is empty after Close: sync and close the
// output, then release everyone waiting.
func (w *writer) finish() {
	l := w.l
	w.reportDrops(time.Now())
	err := l.out.Sync()
	if l.syncStd || errors.Is(err, syscall.EINVAL) {
		// fsync on a pipe, socket or tty fails with EINVAL and means
		// nothing there (zap issue #370); stderr/stdout errors are ignored.
		err = nil
	}
	if l.closeOut != nil {
		if cerr := l.closeOut(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		err = fmt.Errorf("logging: close output: %w", err)
	}
	l.exitErr = err
	l.exited.Store(true)
	l.mu.Lock()
	for _, fw := range l.waiters {
		close(fw.ch)
	}
	l.waiters = nil
	l.mu.Unlock()
	close(l.done)
}
