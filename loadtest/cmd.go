package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// SinkCommand is `relayd sink`: run a sink until SIGINT/SIGTERM, then print
// its counters.
func SinkCommand() *cobra.Command {
	var cfg SinkConfig
	var asJSON bool
	var procs int
	cmd := &cobra.Command{
		Use:   "sink",
		Short: "Run a TCP sink (echo, discard, banner or source) for load tests",
		Long: `Run a TCP sink on the gnet engine (one SO_REUSEPORT listener per event loop).
Modes: echo (write back what arrives), discard (drop it), banner (send
--banner first, like SMTP's 220, then echo), source (stream a fixed pattern
until the client closes; pair with 'relayd load --mode bulk --direction down').
Counters are printed when SIGINT or SIGTERM stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			if procs > 1 {
				if err := cfg.Validate(); err != nil {
					return err
				}
				var args []string
				cmd.Flags().Visit(func(f *pflag.Flag) {
					if f.Name != "procs" && f.Name != "listen" && f.Name != "json" {
						args = append(args, "--"+f.Name+"="+f.Value.String())
					}
				})
				st, err := RunSinkProcs(ctx, cfg, procs, args, func(addr string) {
					fmt.Fprintf(out, "sink listening on %s mode %s (%d processes)\n", addr, modeOr(cfg.Mode, SinkEcho), procs)
				})
				printSinkStats(out, st, asJSON)
				return err
			}
			s, err := StartSink(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "sink listening on %s mode %s\n", s.Addr(), modeOr(cfg.Mode, SinkEcho))
			<-ctx.Done()
			err = s.Close()
			printSinkStats(out, s.Stats(), asJSON)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:9000", "address to listen on (port 0 picks one and prints it)")
	f.StringVar(&cfg.Mode, "mode", SinkEcho, "echo|discard|banner|source")
	f.IntVar(&cfg.Loops, "loops", 0, "event loops (0 = number of CPUs)")
	f.BoolVar(&cfg.Balance, "balance", false, "one acceptor, each connection to the least-loaded loop (even long streams) instead of SO_REUSEPORT per loop")
	f.StringVar(&cfg.Banner, "banner", "", "banner mode greeting (default "+fmt.Sprintf("%q", DefaultBanner)+")")
	f.BoolVar(&asJSON, "json", false, "print the exit counters as JSON")
	f.IntVar(&procs, "procs", 1, "run this many sink processes on the one SO_REUSEPORT address (each with its own open-file limit); the counters printed at exit are their sums")
	return cmd
}

func printSinkStats(out io.Writer, st SinkStats, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(st)
		fmt.Fprintf(out, "%s\n", b)
		return
	}
	fmt.Fprintf(out, "accepted %d closed %d bytes_in %d bytes_out %d\n", st.Accepted, st.Closed, st.BytesIn, st.BytesOut)
}

// LoadCommand is `relayd load`: run one load test and print its result.
// It exits non-zero (returns an error wrapping ErrThreshold) when
// --max-errors or --max-p99 is breached.
func LoadCommand() *cobra.Command {
	var (
		cfg       LoadConfig
		asJSON    bool
		maxErrors int64
		maxP99    time.Duration
		minRate   float64
		heldFD    int
		histLog   string
		ivJSON    string
		outPath   string
	)
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Generate paced TCP load against a relay or a sink",
		Long: `Generate TCP load in the smtp-source tradition.
Modes: rr (connect, write --size bytes, read them back, close), bulk (--streams
long streams --direction up|down|both for --duration), idle (open and hold
--sessions, each proven by one echo; with --pid report that process's RSS per
session), storm (open and close --sessions as fast as pacing allows).
Connects are paced by --max-inflight-connects (1 = smtp-source) and
--connect-rate. --rate R makes rr and storm open-loop (wrk2's model): a
session is due every 1/R s whatever the others do, and its latency counts
from when it was due, so a stalled target shows as latency, not as a lower
rate. Every --interval one line goes to stderr (with --json-intervals, one
JSON object to that file); --record keeps every session in a compact file
for 'relayd load report'. The p99 that --max-p99 checks is the session
latency for open-loop runs, the round trip for rr and idle and the connect
time for storm and bulk.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Progress = cmd.ErrOrStderr()
			if ivJSON != "" && cfg.Procs <= 1 {
				w, closeIv, err := createOut(ivJSON, cmd.OutOrStdout())
				if err != nil {
					return err
				}
				defer closeIv()
				cfg.IntervalsJSON = w
			}
			if heldFD > 0 {
				held := os.NewFile(uintptr(heldFD), "held")
				defer held.Close()
				cfg.Held = func() { _, _ = held.WriteString("held\n") }
			}
			var res *Result
			var runErr error
			if cfg.Procs > 1 {
				if err := cfg.Validate(); err != nil {
					return err
				}
				res, runErr = RunProcs(ctx, cfg, func(c LoadConfig, fd int) []string { return childArgs(cmd, c, fd) })
			} else {
				res, runErr = Run(ctx, cfg)
			}
			if res == nil {
				return runErr
			}
			out := cmd.OutOrStdout()
			if outPath != "" && outPath != "-" {
				w, closeOut, err := createOut(outPath, out)
				if err != nil {
					return err
				}
				defer closeOut()
				out = w
			}
			if ivJSON != "" && cfg.Procs > 1 {
				// The children's intervals, merged: written at the end.
				w, closeIv, err := createOut(ivJSON, out)
				if err != nil {
					return err
				}
				for _, iv := range res.Intervals {
					iv.Hist = ""
					b, _ := json.Marshal(iv)
					fmt.Fprintf(w, "%s\n", b)
				}
				closeIv()
			}
			if histLog != "" {
				if err := writeFile(histLog, res.WriteHistLog); err != nil {
					return err
				}
			}
			if asJSON {
				b, err := res.JSON()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s\n", b)
			} else if err := res.WriteSummary(out); err != nil {
				return err
			}
			if runErr != nil {
				return runErr
			}
			return res.CheckThresholds(Thresholds{MaxErrors: maxErrors, MaxP99: maxP99, MinRate: minRate})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Target, "target", "", "host:port to load (required)")
	f.StringVar(&cfg.Mode, "mode", ModeRR, "rr|bulk|idle|storm")
	f.IntVar(&cfg.Concurrency, "concurrency", 0, "sessions at once (0 = 50 rr, 128 storm, 64 idle openers)")
	f.DurationVar(&cfg.Duration, "duration", 0, "rr/bulk run time (0 = 10s unless --sessions); idle hold time")
	f.IntVar(&cfg.Sessions, "sessions", 0, "rr: stop after N sessions; idle/storm: sessions to open")
	f.IntVar(&cfg.Requests, "requests", 0, "rr: round trips per session on one connection (0 = 1; keep-alive ping-pong)")
	f.IntVar(&cfg.Size, "size", 0, "rr payload / idle proof echo in bytes (0 = 64)")
	f.IntVar(&cfg.Streams, "streams", 0, "bulk streams (0 = 1)")
	f.StringVar(&cfg.Direction, "direction", DirUp, "bulk direction up|down|both")
	f.IntVar(&cfg.MaxInflightConnects, "max-inflight-connects", 0, "connects outstanding at once (0 = no cap, 1 = smtp-source)")
	f.Float64Var(&cfg.ConnectRate, "connect-rate", 0, "connect starts per second (0 = no cap)")
	f.Float64Var(&cfg.Rate, "rate", 0, "open loop: start this many sessions per second on a fixed schedule, latency from when each was due (rr, storm; --concurrency then caps those outstanding, default 10000); with --requests > 1, round trips per second over --concurrency persistent connections")
	f.DurationVar(&cfg.Interval, "interval", DefaultInterval, "period of the interval reports")
	f.StringVar(&ivJSON, "json-intervals", "", "write each interval report as one JSON line to this file (- = stdout)")
	f.StringVar(&cfg.RecordPath, "record", "", "record every session to this file (compact binary, ~20-25 bytes a session; read it with 'relayd load report')")
	f.StringVar(&histLog, "hist-log", "", "write the interval latency histograms to this file as an HdrHistogram interval log")
	f.IntVar(&cfg.Proc, "proc", 0, "this process's index within a --procs run (set by the parent)")
	_ = f.MarkHidden("proc")
	f.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 0, "per-connect timeout (0 = 5s)")
	f.DurationVar(&cfg.IOTimeout, "io-timeout", 0, "per-session I/O timeout after connect (0 = 10s)")
	f.StringVar(&cfg.SourceIPs, "source-ips", "", "local addresses round-robin, e.g. 127.0.0.2-127.0.0.50")
	f.IntSliceVar(&cfg.PIDs, "pid", nil, "idle: report the RSS (summed) of these processes before/after and per session; repeatable or comma-separated")
	f.StringVar(&cfg.ExpectBanner, "expect-banner", "", "read and verify this greeting first on every session")
	f.StringVar(&cfg.ProgressMode, "progress", "auto", "auto (a live bar on a terminal, a plain line every 5s on stderr otherwise) or off")
	f.BoolVar(&asJSON, "json", false, "print one JSON object instead of the table")
	f.StringVarP(&outPath, "out", "o", "-", "write the result (table or --json) to this file instead of stdout")
	f.IntVar(&cfg.Procs, "procs", 1, "spread the run over this many processes (each with its own open-file limit; sessions, streams, concurrency, pacing and --source-ips divided), merged exactly into one result")
	f.IntVar(&heldFD, "held-fd", 0, "idle: write the line \"held\" to this open descriptor once every session is open (with --procs, once every child's are), for scripts that measure while they are held")
	f.Int64Var(&maxErrors, "max-errors", 0, "exit non-zero if more sessions than this fail (0: any failure fails the run; -1 = off)")
	f.DurationVar(&maxP99, "max-p99", 0, "exit non-zero if the mode's p99 exceeds this (0 = off)")
	f.Float64Var(&minRate, "min-rate", 0, "exit non-zero if fewer sessions per second than this completed (0 = off)")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

// ExpandArgs expands the shell patterns (*, ?, [) among file arguments,
// in sorted order, for runs where no shell does it (a container without
// one); "name=pattern" keeps its name for a single match. A pattern that
// matches nothing is an error, not an empty run.
func ExpandArgs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		name, pat := "", a
		if i := strings.IndexByte(a, '='); i > 0 {
			name, pat = a[:i+1], a[i+1:]
		}
		if !strings.ContainsAny(pat, "*?[") {
			out = append(out, a)
			continue
		}
		m, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("%w: pattern %q: %v", ErrBadConfig, pat, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%w: %q matches no file", ErrBadConfig, pat)
		}
		if len(m) > 1 {
			name = "" // several runs: each named by its file
		}
		for _, f := range m {
			out = append(out, name+f)
		}
	}
	return out, nil
}

// MergeCommand is `relayd load merge`: JSON results into one JSON result
// (exactly: Merge), or record files into one record file.
func MergeCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "merge FILE...",
		Short: "Merge load runs made at the same time (several processes or machines) into one",
		Long: `Merge JSON results (relayd load --json) into one JSON result: counts and bytes
summed, histograms added (never percentiles averaged), intervals aligned by
their start times. Or merge record files (relayd load --record) into one
record file (-o required). Runs of different modes, open-loop with closed-loop
runs, and JSON with records are refused. Arguments may be patterns
('results/*.json'), expanded here for containers without a shell.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			args, err := ExpandArgs(args)
			if err != nil {
				return err
			}
			recs := 0
			for _, a := range args {
				is, err := IsRecordFile(a)
				if err != nil {
					return fmt.Errorf("loadtest: merge: %w", err)
				}
				recs += btoi(is)
			}
			switch {
			case recs == len(args):
				if out == "" || out == "-" {
					return fmt.Errorf("%w: merging record files needs -o FILE", ErrBadConfig)
				}
				return ConcatRecords(out, args)
			case recs > 0:
				return fmt.Errorf("%w: merge takes JSON results or record files, not both", ErrBadConfig)
			}
			var parts []*Result
			for _, a := range args {
				b, err := os.ReadFile(a)
				if err != nil {
					return fmt.Errorf("loadtest: merge: %w", err)
				}
				r, err := ParseResult(b)
				if err != nil {
					return fmt.Errorf("loadtest: merge %s: %w", a, err)
				}
				parts = append(parts, r)
			}
			m, err := Merge(parts)
			if err != nil {
				return err
			}
			b, err := m.JSON()
			if err != nil {
				return err
			}
			w, done, err := createOut(orStdout(out), cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer done()
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "-", "write the merged result here (- = stdout; required for record files)")
	return cmd
}

func orStdout(p string) string {
	if p == "" {
		return "-"
	}
	return p
}

// childArgs is the command line of one --procs child: the flags the user
// set, but the child's share of the divided ones, JSON out, no progress and
// no thresholds (the parent checks them on the merged result).
func childArgs(cmd *cobra.Command, c LoadConfig, heldFD int) []string {
	own := map[string]bool{"procs": true, "json": true, "progress": true, "sessions": true, "concurrency": true,
		"connect-rate": true, "max-inflight-connects": true, "source-ips": true, "streams": true, "pid": true,
		"max-errors": true, "max-p99": true, "min-rate": true, "held-fd": true, "rate": true, "record": true,
		"hist-log": true, "json-intervals": true, "proc": true, "out": true}
	args := []string{"load"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if !own[f.Name] {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	args = append(args, "--json", "--progress=off", "--max-errors=-1",
		"--sessions="+strconv.Itoa(c.Sessions), "--concurrency="+strconv.Itoa(c.Concurrency),
		"--connect-rate="+strconv.FormatFloat(c.ConnectRate, 'f', -1, 64),
		"--max-inflight-connects="+strconv.Itoa(c.MaxInflightConnects),
		"--source-ips="+c.SourceIPs, "--streams="+strconv.Itoa(c.Streams),
		"--held-fd="+strconv.Itoa(heldFD), "--rate="+strconv.FormatFloat(c.Rate, 'f', -1, 64),
		"--proc="+strconv.Itoa(c.Proc))
	if c.RecordPath != "" {
		args = append(args, "--record="+c.RecordPath)
	}
	return args
}

// Thresholds are the limits CheckThresholds holds a result to.
type Thresholds struct {
	MaxErrors int64         // more failed sessions fail the run; < 0 disables
	MaxP99    time.Duration // a higher p99 of the mode's figure fails it; 0 disables
	MinRate   float64       // fewer clean sessions per second fail it; 0 disables
}

// CheckThresholds returns an error wrapping ErrThreshold, with a one-line
// reason, if more than MaxErrors sessions failed, if a bulk run moved no
// byte (a wrong sink pairing looks like success otherwise), if an open-loop
// run did not keep its rate, if fewer than MinRate sessions per second
// completed, or if the mode's p99 exceeds MaxP99: the session latency for
// open-loop runs, the round trip for rr and idle, the connect time for
// storm and bulk.
func (r *Result) CheckThresholds(t Thresholds) error {
	if t.MaxErrors >= 0 && r.ErrorsTotal > uint64(t.MaxErrors) {
		return fmt.Errorf("%w: %d sessions failed, --max-errors allows %d", ErrThreshold, r.ErrorsTotal, t.MaxErrors)
	}
	if r.Mode == ModeBulk && r.BytesSent+r.BytesReceived == 0 {
		return fmt.Errorf("%w: the bulk run moved 0 bytes (is the target a sink of the right mode?)", ErrThreshold)
	}
	if r.RateShortfall != "" {
		return fmt.Errorf("%w: rate not reached: %s", ErrThreshold, r.RateShortfall)
	}
	if t.MinRate > 0 && r.SessionsPerSec < t.MinRate {
		return fmt.Errorf("%w: %.0f sessions/s, --min-rate asks %.0f", ErrThreshold, r.SessionsPerSec, t.MinRate)
	}
	if t.MaxP99 > 0 {
		p, name := r.RTT, "rtt"
		switch {
		case r.Rate > 0:
			p, name = r.Latency, "session latency"
		case r.Mode == ModeStorm || r.Mode == ModeBulk:
			p, name = r.Connect, "connect"
		}
		if p.P99 > t.MaxP99 {
			return fmt.Errorf("%w: %s p99 %v > max %v", ErrThreshold, name, p.P99, t.MaxP99)
		}
	}
	return nil
}

// createOut opens path for writing ("-" is stdout) and returns the
// function that closes it.
func createOut(path string, stdout io.Writer) (io.Writer, func(), error) {
	if path == "-" {
		return stdout, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("loadtest: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// writeFile writes path through fn.
func writeFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	w := bufio.NewWriter(f)
	err = fn(w)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("loadtest: %s: %w", path, err)
	}
	return nil
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func modeOr(m, def string) string {
	if m == "" {
		return def
	}
	return m
}
