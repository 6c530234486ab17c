package report

import (
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Spectrum draws every run's latency by percentile, HdrHistogram's plot:
// x is the percentile on a log scale of 1/(1-p) (90%, 99%, 99.9%, …), y
// the latency on a log scale. One polyline (class "series") per run.
func Spectrum(runs []*Run) string {
	lo, hi, xmax := math.Inf(1), 0.0, 1.0
	for _, r := range runs {
		if r.Latency.TotalCount() == 0 {
			continue
		}
		lo, hi = min(lo, float64(r.Latency.Min())), max(hi, float64(r.Latency.Max()))
		xmax = max(xmax, min(math.Ceil(math.Log10(float64(r.Latency.TotalCount()))), maxSpectrumX))
	}
	if hi == 0 {
		lo, hi = latLow, latLow*10
	}
	y := latAxis(lo, hi)
	x := axis{lo: 0, hi: xmax, px: plotW}
	w := newSVG("spectrum", spectrumTitle)
	w.yLatencyTicks(y)
	for d := 0.0; d <= xmax; d++ {
		px := x.at(d)
		label := "0%"
		if d > 0 {
			label = strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", 100*(1-math.Pow(10, -d))), "0"), ".") + "%"
		}
		fmt.Fprintf(&w.b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s"/>`, px, px, padT, padT+plotH, gridColour)
		fmt.Fprintf(&w.b, `<text x="%.1f" y="%d" text-anchor="middle" %s>%s</text>`, px, padT+plotH+16, labelStyle, label)
	}
	fmt.Fprintf(&w.b, `<text x="%d" y="%d" text-anchor="middle" %s>percentile</text>`, padL+plotW/2, chartH-4, labelStyle)
	var names []string
	for i, r := range runs {
		names = append(names, r.Name)
		w.polyline("series", r.Name, colour(i), "", spectrumPoints(r.Latency, x, y))
	}
	w.legend(names, "")
	return w.String()
}

func spectrumPoints(h *hdrhistogram.Histogram, x, y axis) [][2]float64 {
	if h.TotalCount() == 0 {
		return nil
	}
	// Up to the percentile the sample count can resolve.
	top := min(math.Log10(float64(h.TotalCount())), maxSpectrumX)
	var pts [][2]float64
	for i := 0; ; i++ {
		d := float64(i) / spectrumStepsPerDecade
		if d > top {
			d = top
		}
		q := 100 * (1 - math.Pow(10, -d))
		pts = append(pts, [2]float64{x.at(d), y.at(float64(h.ValueAtQuantile(q)))})
		if d >= top {
			break
		}
	}
	pts = append(pts, [2]float64{x.at(top), y.at(float64(h.Max()))})
	return pts
}

// Rates draws sessions per second over time, one polyline (class
// "series rate") per run and, for a run with failures, its errors per
// second dashed (class "series errors").
func Rates(runs []*Run) string {
	span, top := 1.0, 1.0
	for _, r := range runs {
		for _, b := range r.Bins {
			span = max(span, b.Start+b.Length)
			if b.Length >= r.BinWidth/2 {
				top = max(top, float64(b.OK+b.Errors)/b.Length)
			}
		}
	}
	x := axis{lo: 0, hi: span, px: plotW}
	y := axis{lo: 0, hi: top * 1.1, px: plotH, flip: true}
	w := newSVG("rates", rateTitle)
	w.yLinearTicks(y, "/s")
	w.xTimeTicks(x)
	var names []string
	for i, r := range runs {
		names = append(names, r.Name)
		var ok, bad [][2]float64
		var anyErr bool
		for _, b := range r.Bins {
			if b.Length < r.BinWidth/2 {
				continue // a run's last, partial interval: too short for a rate
			}
			mid := x.at(b.Start + b.Length/2)
			ok = append(ok, [2]float64{mid, y.at(float64(b.OK) / b.Length)})
			bad = append(bad, [2]float64{mid, y.at(float64(b.Errors) / b.Length)})
			anyErr = anyErr || b.Errors > 0
		}
		w.polyline("series rate", r.Name, colour(i), "", ok)
		if anyErr {
			w.polyline("series errors", r.Name, colour(i), "4 3", bad)
		}
	}
	w.legend(names, "dashed: errors/s")
	return w.String()
}

// OverTime draws one run's session latency by when each session was due:
// a point per session (class "pt", failures in red) for small runs, a heat
// map (class "cell") for large ones, and the p99 of each time bin as a
// line (class "p99").
func OverTime(r *Run, idx int) string {
	span := 1.0
	for _, b := range r.Bins {
		span = max(span, b.Start+r.BinWidth)
	}
	lo, hi := float64(r.Latency.Min()), float64(r.Latency.Max())
	y := latAxis(lo, max(hi, lo))
	x := axis{lo: 0, hi: span, px: plotW}
	w := newSVG("overtime", "Latency over time: "+r.Name)
	w.yLatencyTicks(y)
	w.xTimeTicks(x)
	switch {
	case r.Points != nil:
		for _, p := range r.Points {
			fill := colour(idx)
			cls := "pt"
			if p.Failed {
				fill, cls = errorColour, "pt failed"
			}
			fmt.Fprintf(&w.b, `<circle class="%s" cx="%.1f" cy="%.1f" r="%g" fill="%s" fill-opacity="0.6"/>`, cls, x.at(p.T), y.at(p.Latency), pointRadius, fill)
		}
	case r.Heat != nil:
		var top uint32
		for _, col := range r.Heat {
			for _, c := range col {
				top = max(top, c)
			}
		}
		cw := x.at(r.BinWidth) - x.at(0)
		for b, col := range r.Heat {
			for row, c := range col {
				if c == 0 {
					continue
				}
				// Row edges in ns, on the heat map's own log scale.
				e0 := latLow * math.Pow(latHigh/latLow, float64(row)/latBins)
				e1 := latLow * math.Pow(latHigh/latLow, float64(row+1)/latBins)
				y0, y1 := y.at(e1), y.at(e0)
				op := minOpacity + (1-minOpacity)*math.Log1p(float64(c))/math.Log1p(float64(top))
				fmt.Fprintf(&w.b, `<rect class="cell" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f"><title>%d sessions</title></rect>`,
					x.at(float64(b)*r.BinWidth), y0, max(cw, 0.5), max(y1-y0, 0.5), heatColour, op, c)
			}
		}
	default:
		// A JSON result: its intervals' p50 and max.
		var p50, mx [][2]float64
		for _, b := range r.Bins {
			if b.OK+b.Errors == 0 {
				continue
			}
			mid := x.at(b.Start + r.BinWidth/2)
			p50 = append(p50, [2]float64{mid, y.at(b.P50)})
			mx = append(mx, [2]float64{mid, y.at(b.Max)})
		}
		w.polyline("p50", r.Name, colour(idx), "2 2", p50)
		w.polyline("max", r.Name, errorColour, "2 2", mx)
	}
	var p99 [][2]float64
	for _, b := range r.Bins {
		if b.OK+b.Errors > 0 {
			p99 = append(p99, [2]float64{x.at(b.Start + r.BinWidth/2), y.at(b.P99)})
		}
	}
	w.polyline("p99", r.Name, "#333", "", p99)
	what := "each point one session"
	switch {
	case r.Heat != nil:
		what = "heat map: darker = more sessions"
	case r.Points == nil:
		what = "dashed: p50 and max per interval"
	}
	w.legend(nil, what+"; line: p99 per "+fmtCount(r.BinWidth)+"s")
	return w.String()
}

const pageStyle = `body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#222}
h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:20px 0 6px}table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th:first-child,td:first-child{text-align:left}thead th{background:#eef}
svg.chart{width:100%;height:auto;display:block}.note{color:#a40;margin:4px 0}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
.scroll{overflow-x:auto}footer{color:#777;font-size:12px;margin-top:20px}`

// WriteHTML writes one self-contained page (inline CSS and SVG, no
// script, no external resource) comparing runs.
func WriteHTML(w io.Writer, runs []*Run, title string) error {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>%s</title><style>%s</style></head><body>\n", esc(title), pageStyle)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", esc(title))
	b.WriteString(`<h2>Runs</h2><div class="scroll"><table id="summary"><thead><tr><th>run</th><th>mode</th><th>target</th><th>sessions</th><th>errors</th><th>per s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>source</th></tr></thead><tbody>`)
	for i, r := range runs {
		h := r.Latency
		q := func(p float64) string { return fmtDur(time.Duration(h.ValueAtQuantile(p))) }
		rate := perSec(r)
		mode := r.Mode
		if r.Rate > 0 {
			mode += fmt.Sprintf(" open loop %.0f/s", r.Rate)
		}
		fmt.Fprintf(&b, `<tr class="run"><td><span class="swatch" style="background:%s"></span>%s</td><td>%s</td><td>%s</td><td>%d</td><td title="%s">%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`,
			colour(i), esc(r.Name), esc(mode), esc(r.Target), r.Sessions, esc(kinds(r.ErrorKinds)), r.Errors, rate,
			q(50), q(90), q(99), q(99.9), fmtDur(time.Duration(h.Max())), sourceOf(r))
	}
	b.WriteString("</tbody></table></div>\n")
	for _, r := range runs {
		if r.Note != "" {
			fmt.Fprintf(&b, `<p class="note">%s: %s</p>`, esc(r.Name), esc(r.Note))
		}
	}
	b.WriteString("<p>Latency is each session's time from when it was due to its end: for an open-loop run (--rate) that includes any time the schedule was held up, so a stalled target shows as latency rather than as a lower rate.</p>\n")
	fmt.Fprintf(&b, "<h2>%s</h2>\n%s\n", spectrumTitle, Spectrum(runs))
	fmt.Fprintf(&b, "<h2>%s and errors</h2>\n%s\n", rateTitle, Rates(runs))
	for i, r := range runs {
		fmt.Fprintf(&b, `<section class="run" data-run="%s"><h2>Latency over time: %s</h2>%s`, esc(r.Name), esc(r.Name), OverTime(r, i))
		if len(r.Slowest) > 0 {
			fmt.Fprintf(&b, `<h2>Slowest %d sessions: %s</h2><div class="scroll"><table class="slowest"><thead><tr><th>due at</th><th>latency</th><th>wait</th><th>connect</th><th>ttfb</th><th>rtt</th><th>duration</th><th>sent</th><th>received</th><th>error</th><th>source</th><th>proc</th></tr></thead><tbody>`, len(r.Slowest), esc(r.Name))
			for _, s := range r.Slowest {
				src := "-"
				if s.Source.IsValid() {
					src = s.Source.String()
				}
				fmt.Fprintf(&b, "<tr><td>%.3fs</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%d</td></tr>",
					s.Start.Seconds(), fmtDur(s.Latency()), fmtDur(s.Wait), fmtDur(s.Connect), fmtDur(s.TTFB), fmtDur(s.RTT), fmtDur(s.Duration),
					s.Sent, s.Received, esc(orDash(s.Kind)), esc(src), s.Proc)
			}
			b.WriteString("</tbody></table></div>")
		} else if !r.Records {
			b.WriteString(`<p>No per-session data: this run is a JSON result (run with --record for every session).</p>`)
		}
		b.WriteString("</section>\n")
	}
	fmt.Fprintf(&b, "<footer>relayd load report, %s. Inputs: %s.</footer>\n</body></html>\n", time.Now().UTC().Format(time.RFC3339), esc(inputs(runs)))
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes the report as plain text: the summary and, for
// recorded runs, the slowest sessions.
func WriteText(w io.Writer, runs []*Run) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %-6s %10s %8s %10s %10s %10s %10s %10s %10s\n", "run", "mode", "sessions", "errors", "per_s", "p50", "p90", "p99", "p99.9", "max")
	for _, r := range runs {
		h := r.Latency
		q := func(p float64) string { return fmtDur(time.Duration(h.ValueAtQuantile(p))) }
		rate := perSec(r)
		fmt.Fprintf(&b, "%-16s %-6s %10d %8d %10s %10s %10s %10s %10s %10s\n", r.Name, r.Mode, r.Sessions, r.Errors, rate, q(50), q(90), q(99), q(99.9), fmtDur(time.Duration(h.Max())))
	}
	for _, r := range runs {
		if r.Note != "" {
			fmt.Fprintf(&b, "\n%s: %s\n", r.Name, r.Note)
		}
		if len(r.Slowest) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nslowest %d sessions of %s:\n%10s %10s %10s %10s %10s %10s %-12s %s\n", len(r.Slowest), r.Name, "due_at", "latency", "wait", "connect", "ttfb", "rtt", "error", "source")
		for _, s := range r.Slowest {
			src := "-"
			if s.Source.IsValid() {
				src = s.Source.String()
			}
			fmt.Fprintf(&b, "%9.3fs %10s %10s %10s %10s %10s %-12s %s (proc %d)\n", s.Start.Seconds(), fmtDur(s.Latency()), fmtDur(s.Wait), fmtDur(s.Connect), fmtDur(s.TTFB), fmtDur(s.RTT), orDash(s.Kind), src, s.Proc)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// perSec is a run's sessions per second, or requests per second for a
// keep-alive run.
func perSec(r *Run) string {
	if r.Elapsed <= 0 {
		return "-"
	}
	if r.Requests > 0 {
		return fmt.Sprintf("%.0f req", float64(r.Requests)/r.Elapsed.Seconds())
	}
	return fmt.Sprintf("%.0f", float64(r.Sessions)/r.Elapsed.Seconds())
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func kinds(m map[string]uint64) string {
	var out []string
	for k, v := range m {
		if v > 0 {
			out = append(out, fmt.Sprintf("%s=%d", k, v))
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sourceOf(r *Run) string {
	if r.Records {
		return "records"
	}
	return "json"
}

func inputs(runs []*Run) string {
	var out []string
	for _, r := range runs {
		out = append(out, r.Name+"="+r.Path)
	}
	return strings.Join(out, ", ")
}
