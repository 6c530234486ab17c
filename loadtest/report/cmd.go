package report

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Formats of Command's output.
const (
	FormatHTML = "html"
	FormatText = "text"
)

// Command is `relayd load report`: read record files and JSON results,
// write one report of all of them.
func Command() *cobra.Command {
	var out, format, title string
	var slowest int
	cmd := &cobra.Command{
		Use:   "report [name=]FILE...",
		Short: "Write an HTML (or text) report of load runs: records or JSON results",
		Long: `Read record files (relayd load --record) and JSON results (relayd load --json),
each one run, and write one report of them side by side: the latency percentile
spectrum, sessions/s and errors over time, each run's latency over time (a point
per session, or a heat map when there are many) and its slowest sessions.
The HTML is one self-contained file: inline CSS and SVG, no script, nothing
fetched. Name a run with name=FILE; by default it is the file's base name.
Arguments may be patterns, expanded here for containers without a shell:
'results/*.rec' is one run a file, 'all=results/*.rec' one run of them all
(the processes or pods of one distributed run; JSON results merged exactly).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != FormatHTML && format != FormatText {
				return fmt.Errorf("report: format %q: want html or text", format)
			}
			if slowest < 0 {
				return fmt.Errorf("report: slowest %d", slowest)
			}
			runs, err := LoadAll(args, slowest)
			if err != nil {
				return err
			}
			var w io.Writer = cmd.OutOrStdout()
			var f *os.File
			if out != "" && out != "-" {
				if f, err = os.Create(out); err != nil {
					return fmt.Errorf("report: %w", err)
				}
				w = f
			}
			bw := bufio.NewWriter(w)
			if format == FormatText {
				err = WriteText(bw, runs)
			} else {
				err = WriteHTML(bw, runs, title)
			}
			if ferr := bw.Flush(); err == nil {
				err = ferr
			}
			if f != nil {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "out", "o", "-", "write the report to this file (- = stdout)")
	f.StringVar(&format, "format", FormatHTML, "html or text")
	f.StringVar(&title, "title", "relayd load report", "the page's title")
	f.IntVar(&slowest, "slowest", DefaultSlowest, "list this many of each recorded run's slowest sessions")
	return cmd
}
