package logging

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap/zapcore"
)

// ErrConfig is wrapped by every error Validate returns.
var ErrConfig = errors.New("logging: invalid config")

// Config configures a Logger. The zero value is usable: info level, JSON to
// stderr, an 8192-entry ring, access log off. The comments give the config
// key each field is read from (see the config package).
type Config struct {
	// Level is the minimum level of ordinary log lines (log.level):
	// "debug", "info", "warn" or "error"; "" means info. Access lines are
	// governed by Access, not by Level.
	Level string
	// Format is the line encoding (log.format): "json" or "console";
	// "" means json.
	Format string
	// Output is where lines go (log.output): "stderr" (also ""), "stdout",
	// or a file path, which is rotated by size with lumberjack.
	Output string
	// RingSize is the number of entries the ring holds (log.ring_size);
	// 0 means 8192. When it is full, new entries are dropped and counted.
	RingSize int
	// EntryBytes is the line buffer pre-allocated per ring slot
	// (log.entry_bytes); 0 means 256. A longer line grows that slot's
	// buffer with one allocation (kept for reuse up to 1 KiB, or
	// EntryBytes if larger); lines are never truncated.
	EntryBytes int
	// Access turns the per-session access log on (log.access).
	Access bool
	// Caller adds the calling file:line to ordinary lines (log.caller).
	// Off by default: zap's caller lookup walks the stack and allocates
	// on every line.
	Caller bool
	// FlushTimeout bounds Close and Sync (log.flush_timeout); 0 means 2s.
	FlushTimeout time.Duration
	// MaxSizeMB is the size at which a file output is rotated
	// (log.max_size_mb); 0 means 100.
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept (log.max_backups);
	// 0 means 5, negative means keep all.
	MaxBackups int
	// MaxAgeDays removes rotated files older than this (log.max_age_days);
	// 0 means no age limit.
	MaxAgeDays int
	// DropReport is the period of the "dropped N log entries" line
	// (log.drop_report); 0 means 10s.
	DropReport time.Duration
	// SampleInitial and SampleThereafter configure zap's sampler for
	// ordinary log lines (log.sample_initial, log.sample_thereafter): per
	// second and per (level, message), the first SampleInitial lines pass,
	// then every SampleThereafter-th. 0 means 100 for each; a negative
	// SampleInitial disables sampling.
	SampleInitial    int
	SampleThereafter int
}

// maxRingSize keeps a typo from reserving gigabytes.
const maxRingSize = 1 << 22

// Validate reports every invalid field, each naming its config key.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	if _, err := parseLevel(c.Level); err != nil {
		bad("log.level: %q is not one of debug|info|warn|error", c.Level)
	}
	switch c.Format {
	case "", "json", "console":
	default:
		bad("log.format: %q is not one of json|console", c.Format)
	}
	if c.RingSize < 0 || c.RingSize > maxRingSize {
		bad("log.ring_size: %d is not in 0..%d", c.RingSize, maxRingSize)
	}
	if c.EntryBytes < 0 || c.EntryBytes > 64<<10 {
		bad("log.entry_bytes: %d is not in 0..%d", c.EntryBytes, 64<<10)
	}
	if c.FlushTimeout < 0 {
		bad("log.flush_timeout: %v is negative", c.FlushTimeout)
	}
	if c.MaxSizeMB < 0 {
		bad("log.max_size_mb: %d is negative", c.MaxSizeMB)
	}
	if c.MaxAgeDays < 0 {
		bad("log.max_age_days: %d is negative", c.MaxAgeDays)
	}
	if c.DropReport < 0 {
		bad("log.drop_report: %v is negative", c.DropReport)
	}
	if c.SampleThereafter < 0 {
		bad("log.sample_thereafter: %d is negative", c.SampleThereafter)
	}
	return errors.Join(errs...)
}

// withDefaults fills in the documented zero-value meanings.
func (c Config) withDefaults() Config {
	if c.Format == "" {
		c.Format = "json"
	}
	if c.Output == "" {
		c.Output = "stderr"
	}
	if c.RingSize == 0 {
		c.RingSize = 8192
	}
	if c.EntryBytes == 0 {
		c.EntryBytes = 256
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 2 * time.Second
	}
	if c.MaxSizeMB == 0 {
		c.MaxSizeMB = 100
	}
	switch {
	case c.MaxBackups == 0:
		c.MaxBackups = 5
	case c.MaxBackups < 0:
		c.MaxBackups = 0 // lumberjack: 0 keeps all
	}
	if c.DropReport == 0 {
		c.DropReport = 10 * time.Second
	}
	if c.SampleInitial == 0 {
		c.SampleInitial = 100
	}
	if c.SampleThereafter == 0 {
		c.SampleThereafter = 100
	}
	return c
}

func parseLevel(s string) (zapcore.Level, error) {
	switch s {
	case "", "info":
		return zapcore.InfoLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("%w: log.level: %q is not one of debug|info|warn|error", ErrConfig, s)
}
