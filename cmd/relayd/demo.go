package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/loadtest"
	"github.com/relayd/relayd/logging"
)

// newDemoCmd runs relayd's main job end to end on the built-in defaults, all
// on loopback: a sink, relayd in front of it, and the same short load run
// directly against the sink and through relayd.
func newDemoCmd() *cobra.Command {
	var dur time.Duration
	var conc int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a sink, relayd and a short load on loopback; print sessions/s and latency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo(cmd.Context(), cmd.OutOrStdout(), dur, conc)
		},
	}
	cmd.Flags().DurationVar(&dur, "duration", 3*time.Second, "length of each load phase")
	cmd.Flags().IntVar(&conc, "concurrency", 50, "concurrent sessions in the rr phases")
	return cmd
}

func demo(ctx context.Context, out io.Writer, dur time.Duration, conc int) error {
	if ctx == nil {
		ctx = context.Background()
	}
	sink, err := loadtest.StartSink(ctx, loadtest.SinkConfig{Listen: "127.0.0.1:0", Mode: "echo"})
	if err != nil {
		return fmt.Errorf("demo: sink: %w", err)
	}
	defer sink.Close()

	// Built-in defaults, one listener on a free port in front of the sink.
	cfg := configs.Default()
	cfg.Listeners = []configs.Listener{configs.NewListener("demo", "127.0.0.1:0", sink.Addr())}
	cfg.Admin.Listen = ""
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := logging.New(logging.Config{Level: "warn", Output: "stderr"})
	if err != nil {
		return err
	}
	defer log.Close(context.Background()) //nolint:errcheck
	d, err := newDaemon(&cfg, log, nil)
	if err != nil {
		return fmt.Errorf("demo: relayd: %w", err)
	}
	if err := d.start(); err != nil {
		return err
	}
	relayAddr := d.addrs["demo"].String()
	fmt.Fprintf(out, "relayd demo: sink %s (echo), relayd %s -> sink; %d loops, %d connector workers, buffer %d B\n\n",
		sink.Addr(), relayAddr, cfg.Relay.LoopCount(), cfg.Connector.Workers, cfg.Relay.BufferSize)

	type row struct {
		name string
		res  *loadtest.Result
	}
	var rows []row
	phases := []struct {
		name, target string
		lc           loadtest.LoadConfig
	}{
		{"rr direct", sink.Addr(), loadtest.LoadConfig{Mode: "rr", Size: 64, Concurrency: conc, Duration: dur}},
		{"rr via relayd", relayAddr, loadtest.LoadConfig{Mode: "rr", Size: 64, Concurrency: conc, Duration: dur}},
		{"bulk direct", sink.Addr(), loadtest.LoadConfig{Mode: "bulk", Streams: 4, Direction: "both", Duration: dur}},
		{"bulk via relayd", relayAddr, loadtest.LoadConfig{Mode: "bulk", Streams: 4, Direction: "both", Duration: dur}},
	}
	for _, p := range phases {
		p.lc.Target = p.target
		p.lc.Progress = os.Stderr
		res, err := loadtest.Run(ctx, p.lc)
		if err != nil {
			_ = d.shutdown(context.Background())
			return fmt.Errorf("demo: %s: %w", p.name, err)
		}
		rows = append(rows, row{p.name, res})
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.shutdown(sctx)
	st := d.relay.Stats()

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tsessions\terrors\tsessions/s\tp50\tp99\tGbit/s\t")
	for _, r := range rows {
		if r.res.Mode == "bulk" { // long streams: throughput is the number, not rate or round trips
			fmt.Fprintf(tw, "%s\t%d streams\t%d\t-\t-\t-\t%.2f\t\n", r.name, r.res.Sessions, r.res.ErrorsTotal, r.res.BitsPerSec/1e9)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%v\t%v\t-\t\n", r.name, r.res.Sessions, r.res.ErrorsTotal,
			r.res.SessionsPerSec, r.res.RTT.P50.Round(time.Microsecond), r.res.RTT.P99.Round(time.Microsecond))
	}
	_ = tw.Flush()
	ratio := func(a, b *loadtest.Result, f func(*loadtest.Result) float64) float64 {
		if f(b) == 0 {
			return 0
		}
		return f(a) / f(b)
	}
	fmt.Fprintf(out, "\nrelayd/direct: rr sessions/s %.2f, bulk throughput %.2f\n",
		ratio(rows[1].res, rows[0].res, func(r *loadtest.Result) float64 { return r.SessionsPerSec }),
		ratio(rows[3].res, rows[2].res, func(r *loadtest.Result) float64 { return r.BitsPerSec }))
	fmt.Fprintf(out, "relayd counters: %d sessions relayed, closed by reason: %s; %d MiB up, %d MiB down, backpressure pauses %d\n",
		st.ClosedTotal(), counts(st.Closed), st.BytesUp>>20, st.BytesDown>>20, st.Pauses)
	if rows[1].res.ErrorsTotal > 0 || rows[3].res.ErrorsTotal > 0 {
		return fmt.Errorf("demo: errors through relayd: rr %s; bulk %s", counts(rows[1].res.Errors), counts(rows[3].res.Errors))
	}
	return nil
}

// counts prints the non-zero entries of m as "a 3, b 1", largest first (then
// by name), or "none".
func counts(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
