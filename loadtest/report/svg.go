package report

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// palette colours runs in order (colour-blind safe, Okabe–Ito).
var palette = []string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"}

func colour(i int) string { return palette[i%len(palette)] }

// Chart geometry, in SVG user units (the page scales them to its width).
const (
	chartW, chartH           = 760, 280
	padL, padR, padT, padB   = 64, 16, 16, 40
	plotW, plotH             = chartW - padL - padR, chartH - padT - padB
	maxSpectrumX             = 6 // 99.9999%
	spectrumStepsPerDecade   = 20
	errorColour, gridColour  = "#d7191c", "#ddd"
	labelStyle               = `font-size="11" fill="#444"`
	heatColour               = "#08306b"
	minOpacity, pointRadius  = 0.08, 1.6
	spectrumTitle, rateTitle = "Latency by percentile", "Sessions per second"
)

// axis maps values to plot coordinates, linear or log10.
type axis struct {
	lo, hi float64
	log    bool
	px     float64 // plot length
	flip   bool    // y: larger values up
}

func (a axis) at(v float64) float64 {
	var f float64
	if a.log {
		v = max(v, a.lo)
		f = (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	} else {
		f = (v - a.lo) / (a.hi - a.lo)
	}
	f = min(max(f, 0), 1)
	if a.flip {
		return padT + a.px*(1-f)
	}
	return padL + a.px*f
}

// latAxis is a log axis over [lo, hi] ns, widened to whole decades.
func latAxis(lo, hi float64) axis {
	lo = math.Pow(10, math.Floor(math.Log10(max(lo, latLow))))
	hi = math.Pow(10, math.Ceil(math.Log10(max(hi, lo*10))))
	return axis{lo: lo, hi: hi, log: true, px: plotH, flip: true}
}

// svgWriter builds one chart.
type svgWriter struct {
	b strings.Builder
}

func newSVG(class, title string) *svgWriter {
	w := &svgWriter{}
	fmt.Fprintf(&w.b, `<svg class="chart %s" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, class, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&w.b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#999"/>`, padL, padT, plotW, plotH)
	return w
}

func (w *svgWriter) String() string { return w.b.String() + "</svg>" }

// yLatencyTicks draws decade grid lines and labels of a latency axis.
func (w *svgWriter) yLatencyTicks(y axis) {
	for v := y.lo; v <= y.hi*1.0001; v *= 10 {
		py := y.at(v)
		fmt.Fprintf(&w.b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>`, padL, padL+plotW, py, py, gridColour)
		fmt.Fprintf(&w.b, `<text x="%d" y="%.1f" text-anchor="end" %s>%s</text>`, padL-4, py+4, labelStyle, fmtNS(v))
	}
}

// yLinearTicks draws about five grid lines of a linear axis.
func (w *svgWriter) yLinearTicks(y axis, unit string) {
	step := niceStep(y.hi-y.lo, 5)
	for v := y.lo; v <= y.hi*1.0001; v += step {
		py := y.at(v)
		fmt.Fprintf(&w.b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>`, padL, padL+plotW, py, py, gridColour)
		fmt.Fprintf(&w.b, `<text x="%d" y="%.1f" text-anchor="end" %s>%s%s</text>`, padL-4, py+4, labelStyle, fmtCount(v), unit)
	}
}

// xTimeTicks labels a time axis in seconds.
func (w *svgWriter) xTimeTicks(x axis) {
	step := niceStep(x.hi-x.lo, 8)
	for v := x.lo; v <= x.hi*1.0001; v += step {
		px := x.at(v)
		fmt.Fprintf(&w.b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s"/>`, px, px, padT, padT+plotH, gridColour)
		fmt.Fprintf(&w.b, `<text x="%.1f" y="%d" text-anchor="middle" %s>%ss</text>`, px, padT+plotH+16, labelStyle, fmtCount(v))
	}
	fmt.Fprintf(&w.b, `<text x="%d" y="%d" text-anchor="middle" %s>time since the run's start (sessions by when they were due)</text>`, padL+plotW/2, chartH-4, labelStyle)
}

// polyline draws one series.
func (w *svgWriter) polyline(class, run, colour, dash string, pts [][2]float64) {
	if len(pts) == 0 {
		return
	}
	fmt.Fprintf(&w.b, `<polyline class="%s" data-run="%s" data-points="%d" fill="none" stroke="%s" stroke-width="1.6"`, class, html.EscapeString(run), len(pts), colour)
	if dash != "" {
		fmt.Fprintf(&w.b, ` stroke-dasharray="%s"`, dash)
	}
	w.b.WriteString(` points="`)
	for i, p := range pts {
		if i > 0 {
			w.b.WriteByte(' ')
		}
		fmt.Fprintf(&w.b, "%.1f,%.1f", p[0], p[1])
	}
	w.b.WriteString(`"/>`)
}

// legend writes the runs' names and colours at the top right.
func (w *svgWriter) legend(names []string, extra string) {
	for i, n := range names {
		y := padT + 14 + 14*i
		fmt.Fprintf(&w.b, `<rect x="%d" y="%d" width="10" height="3" fill="%s"/><text x="%d" y="%d" %s>%s</text>`,
			padL+plotW-230, y-4, colour(i), padL+plotW-216, y, labelStyle, html.EscapeString(n))
	}
	if extra != "" {
		fmt.Fprintf(&w.b, `<text x="%d" y="%d" %s>%s</text>`, padL+plotW-230, padT+14+14*len(names), labelStyle, extra)
	}
}

// niceStep is a 1-2-5 step giving about n ticks over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func fmtNS(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%gms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%gµs", float64(d)/1e3)
	}
}

func fmtCount(v float64) string {
	switch {
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e5)/10)
	case math.Abs(v) >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/1e2)/10)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}
