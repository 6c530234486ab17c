package loadtest

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/relayd/relayd/configs"
)

// Load modes.
const (
	ModeRR    = "rr"    // connect, write Size bytes, read them back, close
	ModeBulk  = "bulk"  // Streams long streams one way (Direction) for Duration
	ModeIdle  = "idle"  // open and hold Sessions, each proven by one echo
	ModeStorm = "storm" // open and close Sessions as fast as pacing allows
)

// Bulk directions.
const (
	DirUp   = "up"   // client writes; use a discard (or echo) sink
	DirDown = "down" // client reads; use a source sink
	DirBoth = "both" // client writes and reads its echo; use an echo sink
)

// Defaults applied by Run for zero fields.
const (
	DefaultConcurrency    = 50
	DefaultDuration       = 10 * time.Second
	DefaultSize           = 64
	DefaultConnectTimeout = 5 * time.Second
	DefaultIOTimeout      = 10 * time.Second
	DefaultIdleWorkers    = 64
	DefaultStormWorkers   = 128
	// DefaultOpenLoopOutstanding caps the sessions an open-loop run has
	// outstanding at once: enough for 2,000 sessions/s to survive a 5 s
	// stall of the target without the schedule slipping, within one
	// process's 20,000 descriptors.
	DefaultOpenLoopOutstanding = 10000
)

// LoadConfig configures Run. Zero values are documented per field.
type LoadConfig struct {
	// Target is the host:port to load (a relay or a sink).
	Target string
	// Mode is rr, bulk, idle or storm; "" means rr.
	Mode string
	// Concurrency is the number of sessions in progress at once in rr and
	// storm, and the number of opener goroutines in idle. 0 means 50 for rr,
	// 128 for storm, 64 for idle.
	Concurrency int
	// Duration: rr runs this long unless Sessions is set (0 and Sessions 0
	// means 10s); bulk streams this long (0 means 10s); idle holds the open
	// sessions this long before closing them (0 means close at once).
	Duration time.Duration
	// Sessions: rr stops after this many sessions (attempts); idle and storm
	// open this many (required there).
	Sessions int
	// Size is the rr payload and the idle proof-echo size in bytes; 0 means 64.
	Size int
	// Requests is the number of round trips per rr session on one
	// connection (keep-alive ping-pong, as redis-benchmark does); 0 means 1.
	// RTT percentiles are then per round trip.
	Requests int
	// Streams is the number of bulk streams; 0 means 1.
	Streams int
	// Direction is up, down or both (bulk only); "" means up.
	Direction string
	// MaxInflightConnects caps connects outstanding at once; 1 is
	// smtp-source's behaviour. 0 means no cap.
	MaxInflightConnects int
	// ConnectRate caps connect starts per second; 0 means no cap.
	ConnectRate float64
	// ConnectTimeout bounds each connect; 0 means 5s.
	ConnectTimeout time.Duration
	// IOTimeout bounds each session's reads and writes after connect (rr,
	// idle, storm banner, bulk drain); 0 means 10s.
	IOTimeout time.Duration
	// SourceIPs spreads connects over local addresses round-robin:
	// "127.0.0.2-127.0.0.50", "127.0.0.2,127.0.0.3" or one address.
	// "" lets the kernel choose.
	SourceIPs string
	// PID, if > 0, is the process whose RSS idle mode reports before and
	// after opening the sessions (the relay under test).
	PID int
	// PIDs are more processes to include in that RSS (summed with PID), e.g.
	// nginx's workers.
	PIDs []int
	// ExpectBanner, if set, is read and verified first on every session
	// (for a banner sink); TTFB is then the time to the banner.
	ExpectBanner string
	// Rate > 0 makes the run open-loop (wrk2's model; rr and storm): a
	// session is due every 1/Rate s whatever the others do, its latency
	// counts from when it was due, and Concurrency caps the sessions
	// outstanding (default DefaultOpenLoopOutstanding). With Requests > 1
	// it is a rate of round trips over Concurrency persistent connections
	// (default 50), each connection's due on its own interleaved schedule
	// and each round trip's latency counted from when it was due. A schedule the
	// generator cannot keep is reported (Result.RateShortfall) and fails
	// the run's thresholds, never silently slowed.
	Rate float64
	// Progress receives the progress display: on a terminal a live bar
	// refreshed every second, anywhere else (a pipe, a file, CI) one
	// interval report line every Interval. nil means none.
	Progress io.Writer
	// ProgressMode is "auto" (default: as described for Progress) or "off".
	ProgressMode string
	// Interval is the period of the interval reports (Result.Intervals,
	// the progress lines, IntervalsJSON); 0 means 1s.
	Interval time.Duration
	// IntervalsJSON, if set, receives each interval as one JSON line.
	IntervalsJSON io.Writer
	// RecordPath, if set, is the file every session is recorded to (the
	// format is in record.go); with Procs > 1 the children's segments are
	// concatenated into it.
	RecordPath string
	// Proc is this process's index within a RunProcs run (its records
	// say so); set by RunProcs.
	Proc int
	// Procs > 1 spreads the run over that many child processes (RunProcs),
	// each with its own open-file limit; 0 and 1 mean this process alone.
	Procs int
	// Held, if set, is called in idle mode once every session is open,
	// before the hold (a RunProcs child tells its parent so).
	Held func()
}

// withDefaults returns c with zero fields filled in.
func (c LoadConfig) withDefaults() LoadConfig {
	if c.Mode == "" {
		c.Mode = ModeRR
	}
	if c.Concurrency == 0 && c.Rate > 0 && c.Requests <= 1 {
		c.Concurrency = DefaultOpenLoopOutstanding
	}
	if c.Concurrency == 0 {
		switch c.Mode {
		case ModeIdle:
			c.Concurrency = DefaultIdleWorkers
		case ModeStorm:
			c.Concurrency = DefaultStormWorkers
		default:
			c.Concurrency = DefaultConcurrency
		}
	}
	if (c.Mode == ModeRR && c.Duration == 0 && c.Sessions == 0) || (c.Mode == ModeBulk && c.Duration == 0) {
		c.Duration = DefaultDuration
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Streams == 0 {
		c.Streams = 1
	}
	if c.Requests == 0 {
		c.Requests = 1
	}
	if c.Direction == "" {
		c.Direction = DirUp
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.IOTimeout == 0 {
		c.IOTimeout = DefaultIOTimeout
	}
	return c
}

// Validate reports a config Run would refuse (after defaults).
func (c LoadConfig) Validate() error {
	c = c.withDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, a...)...)
	}
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return bad("target %q: %v", c.Target, err)
	}
	switch c.Mode {
	case ModeRR, ModeBulk:
	case ModeIdle, ModeStorm:
		if c.Sessions <= 0 {
			return bad("mode %s needs sessions > 0", c.Mode)
		}
	default:
		return bad("mode %q", c.Mode)
	}
	switch c.ProgressMode {
	case "", "auto", "off":
	default:
		return bad("progress %q: want auto or off", c.ProgressMode)
	}
	if c.Interval < 10*time.Millisecond {
		return bad("interval %v: want at least 10ms", c.Interval)
	}
	switch {
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return bad("rate %v", c.Rate)
	case c.Rate > 0 && c.Mode != ModeRR && c.Mode != ModeStorm:
		return bad("rate: open-loop load is for rr and storm (idle and bulk pace with --connect-rate)")
	}
	switch c.Direction {
	case DirUp, DirDown, DirBoth:
	default:
		return bad("direction %q", c.Direction)
	}
	switch {
	case c.Concurrency < 0:
		return bad("concurrency %d", c.Concurrency)
	case c.Sessions < 0:
		return bad("sessions %d", c.Sessions)
	case c.Procs < 0 || c.Procs > MaxProcs:
		return bad("procs %d: want 1..%d", c.Procs, MaxProcs)
	case c.Size < 0 || c.Size > 16<<20:
		return bad("size %d (0..16MiB)", c.Size)
	case c.Streams < 0:
		return bad("streams %d", c.Streams)
	case c.Requests < 0:
		return bad("requests %d", c.Requests)
	case c.Requests > 1 && c.Mode != ModeRR:
		return bad("requests %d: round trips per session are an rr setting", c.Requests)
	case c.Duration < 0, c.ConnectTimeout < 0, c.IOTimeout < 0:
		return bad("negative duration")
	case c.MaxInflightConnects < 0:
		return bad("max-inflight-connects %d", c.MaxInflightConnects)
	case c.ConnectRate < 0:
		return bad("connect-rate %v", c.ConnectRate)
	}
	for _, p := range append([]int{c.PID}, c.PIDs...) {
		if p < 0 {
			return bad("pid %d", p)
		}
	}
	if _, err := ParseSourceIPs(c.SourceIPs); err != nil {
		return err
	}
	return nil
}

// ParseSourceIPs parses "A-B" (an inclusive IPv4 or IPv6 range), "A,B,C" or
// "A". "" yields nil (kernel-chosen source).
func ParseSourceIPs(s string) ([]netip.Addr, error) {
	out, err := configs.ParseAddrList(s)
	if err != nil {
		return nil, fmt.Errorf("%w: source-ips: %v", ErrBadConfig, err)
	}
	return out, nil
}
