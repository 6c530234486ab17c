package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
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
		heldFD    int
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
--connect-rate. The p99 that --max-p99 checks is the round trip for rr and
idle and the connect time for storm and bulk.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Progress = cmd.ErrOrStderr()
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
			return res.CheckThresholds(maxErrors, maxP99)
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
	f.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 0, "per-connect timeout (0 = 5s)")
	f.DurationVar(&cfg.IOTimeout, "io-timeout", 0, "per-session I/O timeout after connect (0 = 10s)")
	f.StringVar(&cfg.SourceIPs, "source-ips", "", "local addresses round-robin, e.g. 127.0.0.2-127.0.0.50")
	f.IntSliceVar(&cfg.PIDs, "pid", nil, "idle: report the RSS (summed) of these processes before/after and per session; repeatable or comma-separated")
	f.StringVar(&cfg.ExpectBanner, "expect-banner", "", "read and verify this greeting first on every session")
	f.StringVar(&cfg.ProgressMode, "progress", "auto", "auto (a live bar on a terminal, a plain line every 5s on stderr otherwise) or off")
	f.BoolVar(&asJSON, "json", false, "print one JSON object instead of the table")
	f.IntVar(&cfg.Procs, "procs", 1, "spread the run over this many processes (each with its own open-file limit; sessions, streams, concurrency, pacing and --source-ips divided), merged exactly into one result")
	f.IntVar(&heldFD, "held-fd", 0, "idle: write the line \"held\" to this open descriptor once every session is open (with --procs, once every child's are), for scripts that measure while they are held")
	f.Int64Var(&maxErrors, "max-errors", 0, "exit non-zero if more sessions than this fail (0: any failure fails the run; -1 = off)")
	f.DurationVar(&maxP99, "max-p99", 0, "exit non-zero if the mode's p99 exceeds this (0 = off)")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

// childArgs is the command line of one --procs child: the flags the user
// set, but the child's share of the divided ones, JSON out, no progress and
// no thresholds (the parent checks them on the merged result).
func childArgs(cmd *cobra.Command, c LoadConfig, heldFD int) []string {
	own := map[string]bool{"procs": true, "json": true, "progress": true, "sessions": true, "concurrency": true,
		"connect-rate": true, "max-inflight-connects": true, "source-ips": true, "streams": true, "pid": true,
		"max-errors": true, "max-p99": true, "held-fd": true}
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
		"--held-fd="+strconv.Itoa(heldFD))
	return args
}

// CheckThresholds returns an error wrapping ErrThreshold if more than
// maxErrors sessions failed (maxErrors < 0 disables), if a bulk run moved no
// byte (a wrong sink pairing looks like success otherwise), or if the mode's
// p99 (RTT for rr and idle, connect for storm and bulk) exceeds maxP99 (0
// disables).
func (r *Result) CheckThresholds(maxErrors int64, maxP99 time.Duration) error {
	if maxErrors >= 0 && r.ErrorsTotal > uint64(maxErrors) {
		return fmt.Errorf("%w: %d sessions failed, --max-errors allows %d", ErrThreshold, r.ErrorsTotal, maxErrors)
	}
	if r.Mode == ModeBulk && r.BytesSent+r.BytesReceived == 0 {
		return fmt.Errorf("%w: the bulk run moved 0 bytes (is the target a sink of the right mode?)", ErrThreshold)
	}
	if maxP99 > 0 {
		p, name := r.RTT, "rtt"
		if r.Mode == ModeStorm || r.Mode == ModeBulk {
			p, name = r.Connect, "connect"
		}
		if p.P99 > maxP99 {
			return fmt.Errorf("%w: %s p99 %v > max %v", ErrThreshold, name, p.P99, maxP99)
		}
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
