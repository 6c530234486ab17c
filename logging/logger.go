package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

// ErrFlushTimeout is wrapped by Close, Flush and Sync when their deadline
// passes with entries still queued; the error text says how many.
var ErrFlushTimeout = errors.New("logging: flush deadline passed")

// Logger is relayd's logger: a zap logger and an access log that both feed
// one bounded ring drained by a single writer goroutine. All methods are
// safe for concurrent use. Create it with New, NewWithWriter or Nop.
type Logger struct {
	z   *zap.Logger
	r   *ring // nil for Nop
	cfg Config
	lvl zap.AtomicLevel
	enc zapcore.Encoder // base encoder; the writer clones it for access lines

	access  atomic.Bool
	closed  atomic.Bool // set by Close before stop; producers then drop
	exited  atomic.Bool // the writer goroutine has returned
	dropped atomic.Uint64
	sampled atomic.Uint64
	written atomic.Uint64
	wErrs   atomic.Uint64

	// Wake-up protocol: the writer sets sleeping, re-checks the ring, and
	// only then waits on wake; a producer that sees sleeping after
	// publishing sends one token. Busy writers cost producers one load.
	sleeping atomic.Bool
	wake     chan struct{}

	flushed atomic.Uint64 // ring position up to which entries have been written
	mu      sync.Mutex    // mu guards waiters
	waiters []flushWaiter

	out      zapcore.WriteSyncer // owned by the writer goroutine
	closeOut func() error        // closes out (files we opened); nil otherwise
	syncStd  bool                // out is stderr/stdout: ignore Sync errors (EINVAL on pipes and ttys)

	closeOnce sync.Once
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed by the writer goroutine on exit
	exitErr   error         // written by the writer before done is closed
}

type flushWaiter struct {
	target uint64
	ch     chan struct{}
}

// New builds a Logger writing to cfg.Output and starts its writer
// goroutine. A file output is opened (and its directory created) now, so a
// bad path fails here rather than at the first log line.
func New(cfg Config) (*Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	switch c.Output {
	case "stderr":
		return newLogger(c, os.Stderr, nil, true), nil
	case "stdout":
		return newLogger(c, os.Stdout, nil, true), nil
	}
	// Only a regular file (or a path that does not exist yet) is rotated:
	// rotation renames the path, which for anything else — a device, a FIFO,
	// a socket, a symlink such as /dev/stderr — would move the node or the
	// link aside and put a regular file in its place.
	if li, err := os.Lstat(c.Output); err == nil && !li.Mode().IsRegular() {
		fi, err := os.Stat(c.Output) // what the link leads to
		if err != nil {
			return nil, fmt.Errorf("%w: log.output: %w", ErrConfig, err)
		}
		w, err := openSpecial(c.Output, fi.Mode())
		if err != nil {
			return nil, fmt.Errorf("%w: log.output: %w", ErrConfig, err)
		}
		return newLogger(c, zapcore.AddSync(w), w.Close, false), nil
	}
	lj := &lumberjack.Logger{
		Filename:   c.Output,
		MaxSize:    c.MaxSizeMB,
		MaxBackups: c.MaxBackups,
		MaxAge:     c.MaxAgeDays,
	}
	// A zero-length write makes lumberjack open (or create) the file.
	if _, err := lj.Write(nil); err != nil {
		return nil, fmt.Errorf("%w: log.output: %w", ErrConfig, err)
	}
	return newLogger(c, zapcore.AddSync(lj), lj.Close, false), nil
}

// NewWithWriter is New with the output replaced by ws (cfg.Output and the
// rotation settings are ignored). Close syncs ws but does not close it.
// Tests use it to point the log at a slow, blocked or recording writer.
func NewWithWriter(cfg Config, ws zapcore.WriteSyncer) (*Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ws == nil {
		return nil, fmt.Errorf("%w: nil WriteSyncer", ErrConfig)
	}
	return newLogger(cfg.withDefaults(), ws, nil, false), nil
}

// Nop returns a Logger that discards everything and has no goroutine.
// Access is off and SetAccess cannot turn it on; Close returns nil.
func Nop() *Logger {
	return &Logger{z: zap.NewNop(), lvl: zap.NewAtomicLevel()}
}

func newLogger(c Config, out zapcore.WriteSyncer, closeOut func() error, std bool) *Logger {
	lvl, _ := parseLevel(c.Level) // validated
	l := &Logger{
		r:        newRing(c.RingSize, c.EntryBytes),
		cfg:      c,
		lvl:      zap.NewAtomicLevelAt(lvl),
		enc:      newEncoder(c.Format),
		wake:     make(chan struct{}, 1),
		out:      out,
		closeOut: closeOut,
		syncStd:  std,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.access.Store(c.Access)
	var core zapcore.Core = &ringCore{LevelEnabler: l.lvl, enc: l.enc.Clone(), l: l}
	if c.SampleInitial > 0 {
		core = zapcore.NewSamplerWithOptions(core, time.Second, c.SampleInitial, c.SampleThereafter,
			zapcore.SamplerHook(func(_ zapcore.Entry, d zapcore.SamplingDecision) {
				if d&zapcore.LogDropped != 0 {
					l.sampled.Add(1)
				}
			}))
	}
	l.z = zap.New(core,
		zap.WithCaller(c.Caller),
		zap.AddStacktrace(zapcore.DPanicLevel),
		// zap reports its own write/encode errors here; by default that is
		// a locked, synchronous stderr, which is exactly the stall we avoid.
		zap.ErrorOutput(zapcore.AddSync(ringWriter{l})),
	)
	go l.run()
	return l
}

func newEncoder(format string) zapcore.Encoder {
	ec := zap.NewProductionEncoderConfig()
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		ec.EncodeTime = func(t time.Time, e zapcore.PrimitiveArrayEncoder) { zapcore.ISO8601TimeEncoder(t.UTC(), e) }
		ec.EncodeDuration = zapcore.StringDurationEncoder
		return zapcore.NewConsoleEncoder(ec)
	}
	ec.EncodeTime = func(t time.Time, e zapcore.PrimitiveArrayEncoder) { zapcore.RFC3339NanoTimeEncoder(t.UTC(), e) }
	return zapcore.NewJSONEncoder(ec)
}

// Z returns the zap logger. Its core encodes on the calling goroutine (as
// zap always does) and copies the bytes into the ring; it never writes to
// the output itself. Repeated (level, message) pairs are sampled.
func (l *Logger) Z() *zap.Logger { return l.z }

// SetFields adds fields to every later ordinary line (not access lines); a
// multi-process worker adds its index. Call it before the logger is shared
// with other goroutines.
func (l *Logger) SetFields(fields ...zap.Field) { l.z = l.z.With(fields...) }

// Access queues one access-log entry. It never blocks and does not
// allocate: the entry is copied by value into a pre-allocated slot and
// encoded later by the writer goroutine. It is a no-op while the access log
// is off; when the ring is full the entry is dropped and counted.
func (l *Logger) Access(e *AccessEntry) {
	if !l.access.Load() {
		return
	}
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	s, pos := l.r.claim()
	if s == nil {
		l.dropped.Add(1)
		return
	}
	s.kind = kindAccess
	s.acc = *e
	if s.acc.Time.IsZero() {
		s.acc.Time = time.Now()
	}
	l.r.publish(s, pos)
	l.wakeWriter()
}

// enqueueLine copies one encoded line into the ring; same rules as Access.
func (l *Logger) enqueueLine(p []byte) {
	if l.closed.Load() {
		l.dropped.Add(1)
		return
	}
	s, pos := l.r.claim()
	if s == nil {
		l.dropped.Add(1)
		return
	}
	s.kind = kindLog
	s.buf = append(s.buf[:0], p...) // allocates only when p outgrows the slot
	l.r.publish(s, pos)
	l.wakeWriter()
}

func (l *Logger) wakeWriter() {
	if l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// AccessEnabled reports whether Access currently records entries. Callers
// may use it to skip filling an AccessEntry.
func (l *Logger) AccessEnabled() bool { return l.access.Load() }

// SetAccess turns the access log on or off at run time (SIGHUP reload).
// It has no effect on a Nop logger.
func (l *Logger) SetAccess(on bool) {
	if l.r != nil {
		l.access.Store(on)
	}
}

// SetLevel changes the level of ordinary log lines at run time.
func (l *Logger) SetLevel(level string) error {
	lvl, err := parseLevel(level)
	if err != nil {
		return err
	}
	l.lvl.SetLevel(lvl)
	return nil
}

// Dropped is the total number of entries lost: rejected because the ring
// was full, logged after Close, or lost in a failed write to the output.
// Lines suppressed by the sampler are counted by Sampled instead.
func (l *Logger) Dropped() uint64 {
	if l.r == nil {
		return 0
	}
	d := l.dropped.Load()
	if l.exited.Load() {
		// Entries claimed by producers that raced with Close after the
		// writer's final drain: they will never be written.
		d += l.r.pending()
	}
	return d
}

// Sampled is the number of ordinary log lines zap's sampler suppressed.
func (l *Logger) Sampled() uint64 { return l.sampled.Load() }

// Written is the number of entries handed to the output in writes that
// succeeded (including the logger's own drop-report lines).
func (l *Logger) Written() uint64 { return l.written.Load() }

// WriteErrors is the number of failed writes to the output.
func (l *Logger) WriteErrors() uint64 { return l.wErrs.Load() }

// Flush waits until every entry queued before the call has been written
// (or its write failed), bounded by ctx and FlushTimeout. It blocks, so a
// relay loop must never call it.
func (l *Logger) Flush(ctx context.Context) error {
	if l.r == nil {
		return nil
	}
	target := l.r.head.Load()
	if l.flushed.Load() >= target {
		return nil
	}
	w := flushWaiter{target: target, ch: make(chan struct{})}
	l.mu.Lock()
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	// The writer stores flushed before it takes mu to scan waiters, so
	// either it sees w or this load sees its progress.
	if l.flushed.Load() >= target {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.FlushTimeout)
	defer cancel()
	select {
	case <-w.ch:
		return nil
	case <-l.done:
		if l.flushed.Load() >= target {
			return nil
		}
		return fmt.Errorf("logging: flush: writer has exited with %d entries not written", l.r.pending())
	case <-ctx.Done():
		return fmt.Errorf("%w: %d entries not written: %w", ErrFlushTimeout, l.r.pending(), context.Cause(ctx))
	}
}

// Close stops accepting entries (later ones are dropped and counted),
// writes what is queued, syncs the output and closes it if New opened it.
// It waits at most until ctx is done or FlushTimeout has passed; if the
// output is stuck it returns an error wrapping ErrFlushTimeout that says
// how many entries were left, and the writer goroutine exits whenever the
// stuck write returns. Close is safe to call more than once; each call
// waits (bounded) and returns the writer's exit error.
func (l *Logger) Close(ctx context.Context) error {
	if l.r == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.stop)
	})
	ctx, cancel := context.WithTimeout(ctx, l.cfg.FlushTimeout)
	defer cancel()
	select {
	case <-l.done:
		return l.exitErr
	case <-ctx.Done():
		return fmt.Errorf("%w: close: %d entries not written: %w", ErrFlushTimeout, l.r.pending(), context.Cause(ctx))
	}
}

// ringCore is a zapcore.Core that encodes on the caller's goroutine and
// copies the bytes into the ring instead of writing them.
type ringCore struct {
	zapcore.LevelEnabler
	enc zapcore.Encoder
	l   *Logger
}

func (c *ringCore) Level() zapcore.Level { return zapcore.LevelOf(c.LevelEnabler) }

func (c *ringCore) With(fields []zapcore.Field) zapcore.Core {
	clone := &ringCore{LevelEnabler: c.LevelEnabler, enc: c.enc.Clone(), l: c.l}
	for i := range fields {
		fields[i].AddTo(clone.enc)
	}
	return clone
}

func (c *ringCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *ringCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(ent, fields)
	if err != nil {
		return err
	}
	c.l.enqueueLine(buf.Bytes())
	buf.Free()
	if ent.Level > zapcore.ErrorLevel {
		// DPanic/Panic/Fatal: the process may be about to die, so give the
		// writer a bounded chance to get this line out, as zap's ioCore does.
		_ = c.Sync()
	}
	return nil
}

// Sync waits (bounded by FlushTimeout) for queued entries to be written.
func (c *ringCore) Sync() error { return c.l.Flush(context.Background()) }

// ringWriter is a non-blocking io.Writer into the ring, used for zap's
// ErrorOutput.
type ringWriter struct{ l *Logger }

func (w ringWriter) Write(p []byte) (int, error) {
	w.l.enqueueLine(p)
	return len(p), nil
}

// openSpecial opens an output that is not a regular file — a character or
// block device (/dev/null, a tty, /dev/console), a FIFO, a Unix socket, or a
// symlink (to any of these or to a file) — to be written as it is. Rotating it would rename the node and create a
// regular file in its place: run as root with log.output /dev/null, that
// replaces the system's /dev/null. A FIFO is opened non-blocking, so a FIFO
// without a reader is an error at start rather than a hang; writes then wait
// in the writer goroutine, never in a loop.
func openSpecial(path string, mode os.FileMode) (io.WriteCloser, error) {
	switch {
	case mode&os.ModeSocket != 0:
		c, err := net.Dial("unixgram", path)
		if err != nil {
			c, err = net.Dial("unix", path)
		}
		return c, err
	case mode&os.ModeNamedPipe != 0:
		return os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	case mode&os.ModeDevice != 0, mode.IsRegular(): // a device, or a file behind a symlink
		return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	}
	return nil, fmt.Errorf("%s is a %v, not a file, device, FIFO or socket", path, mode.Type())
}
