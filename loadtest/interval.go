package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// DefaultInterval is the period of interval reports.
const DefaultInterval = time.Second

// Interval is one period of a run (Result.Intervals, one --json-intervals
// line): what ended in it. JSON names are stable (doc.go).
type Interval struct {
	Start       float64           `json:"t_s"`      // seconds from the run's start to this interval's
	Length      float64           `json:"length_s"` // seconds
	Sessions    uint64            `json:"sessions"` // clean sessions that ended in it
	ErrorsTotal uint64            `json:"errors_total"`
	Errors      map[string]uint64 `json:"errors,omitempty"` // by kind, the non-zero ones
	Bytes       uint64            `json:"bytes"`            // both ways
	PerSec      float64           `json:"sessions_per_sec"`
	BitsPerSec  float64           `json:"bits_per_sec"`
	P50         float64           `json:"p50_us"` // session latency of what ended in it
	P99         float64           `json:"p99_us"`
	Max         float64           `json:"max_us"`
	// Hist is the interval's latency histogram (HdrHistogram V2 compressed,
	// base64, nanoseconds): what merges exactly and what --hist-log writes.
	Hist string `json:"hist,omitempty"`
}

func (iv *Interval) setHist(h *hdrhistogram.Histogram) {
	if h.TotalCount() > 0 {
		us := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1e3 }
		iv.P50, iv.P99, iv.Max = us(50), us(99), float64(h.Max())/1e3
	} else {
		iv.P50, iv.P99, iv.Max = 0, 0, 0
	}
	iv.Hist = ""
	if b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
		iv.Hist = string(b)
	}
	if iv.Length > 0 {
		iv.PerSec = float64(iv.Sessions) / iv.Length
		iv.BitsPerSec = float64(iv.Bytes) * 8 / iv.Length
	}
}

// Line is the interval as one human-readable line.
func (iv *Interval) Line(mode string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%-6s", fmt.Sprintf("%.1fs", iv.Start+iv.Length))
	if mode == ModeBulk {
		fmt.Fprintf(&b, " %7.3f Gbit/s  %s moved", iv.BitsPerSec/1e9, human(float64(iv.Bytes)))
	} else {
		fmt.Fprintf(&b, " %7.0f ok/s  p50 %s  p99 %s  max %s", iv.PerSec, usDur(iv.P50), usDur(iv.P99), usDur(iv.Max))
	}
	fmt.Fprintf(&b, "  %d errors", iv.ErrorsTotal)
	if len(iv.Errors) > 0 {
		kinds := make([]string, 0, len(iv.Errors))
		for k, v := range iv.Errors {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(kinds)
		fmt.Fprintf(&b, " (%s)", strings.Join(kinds, " "))
	}
	return b.String()
}

func usDur(us float64) time.Duration {
	return time.Duration(us * 1e3).Round(time.Microsecond)
}

// intervals runs the interval reports of one Run: every Interval it cuts
// the recorder's interval, keeps it for the Result, and writes its line
// (off a terminal, to Progress) and its JSON (to IntervalsJSON).
type intervals struct {
	cfg  LoadConfig
	rec  *recorder
	out  []Interval
	done chan struct{}
	end  chan struct{}
}

func startIntervals(cfg LoadConfig, rec *recorder, text bool) *intervals {
	iv := &intervals{cfg: cfg, rec: rec, done: make(chan struct{}), end: make(chan struct{})}
	every := cfg.Interval
	go func() {
		defer close(iv.end)
		t := time.NewTicker(every)
		defer t.Stop()
		from := rec.base
		var bulkSeen uint64
		cut := func(now time.Time) {
			var moved uint64
			if cfg.Mode == ModeBulk {
				b := rec.live.Load()
				moved, bulkSeen = b-bulkSeen, b
			}
			x := rec.cut(from, now, moved)
			from = now
			iv.out = append(iv.out, x)
			if text && cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "load: %s %s %s\n", cfg.Mode, cfg.Target, x.Line(cfg.Mode))
			}
			if cfg.IntervalsJSON != nil {
				x.Hist = ""
				b, _ := json.Marshal(x)
				_, _ = cfg.IntervalsJSON.Write(append(b, '\n'))
			}
		}
		for {
			select {
			case <-iv.done:
				cut(time.Now()) // the last part, however short
				return
			case now := <-t.C:
				cut(now)
			}
		}
	}()
	return iv
}

// stop ends the reports and returns every interval.
func (iv *intervals) stop() []Interval {
	close(iv.done)
	<-iv.end
	return iv.out
}

// mergeIntervals adds the intervals of parts that ran at about the same
// time, aligned by their start times: counts summed, histograms added.
func mergeIntervals(base int64, parts []*Result) ([]Interval, error) {
	var out []Interval
	var hs []*hdrhistogram.Histogram
	period := DefaultInterval.Seconds()
	if len(parts) > 0 && parts[0].intervalLen() > 0 {
		period = parts[0].intervalLen()
	}
	for _, p := range parts {
		for i, iv := range p.Intervals {
			length := iv.Length
			if length <= 0 {
				continue
			}
			// Align by the absolute start of the interval, on a grid of
			// whole periods from base.
			abs := float64(p.StartUnixNano-base)/1e9 + iv.Start
			slot := max(int(math.Round(abs/period)), 0)
			for len(out) <= slot {
				out = append(out, Interval{Start: float64(len(out)) * period, Errors: map[string]uint64{}})
				hs = append(hs, newHist())
			}
			m := &out[slot]
			m.Length = max(m.Length, length)
			m.Sessions += iv.Sessions
			m.ErrorsTotal += iv.ErrorsTotal
			m.Bytes += iv.Bytes
			for k, v := range iv.Errors {
				m.Errors[k] += v
			}
			if iv.Hist != "" {
				h, err := hdrhistogram.Decode([]byte(iv.Hist))
				if err != nil {
					return nil, fmt.Errorf("loadtest: interval %d histogram: %w", i, err)
				}
				hs[slot].Merge(h)
			}
		}
	}
	for i := range out {
		if out[i].Length == 0 {
			out[i].Length = period
		}
		if len(out[i].Errors) == 0 {
			out[i].Errors = nil
		}
		out[i].setHist(hs[i])
	}
	return out, nil
}

// intervalLen is the period the run reported at (its longest interval).
func (r *Result) intervalLen() float64 {
	l := 0.0
	for _, iv := range r.Intervals {
		l = max(l, iv.Length)
	}
	return math.Round(l*1000) / 1000
}

// WriteHistLog writes the run's interval latency histograms as an
// HdrHistogram interval log (format 1.3, values in nanoseconds, interval
// max in milliseconds), readable by HdrHistogram's HistogramLogProcessor
// and plotters.
func (r *Result) WriteHistLog(w io.Writer) error {
	lw := hdrhistogram.NewHistogramLogWriter(w)
	startMs := r.StartUnixNano / 1e6
	if err := lw.OutputComment(fmt.Sprintf("[relayd load %s %s: session latency, nanoseconds]", r.Mode, r.Target)); err != nil {
		return err
	}
	if err := lw.OutputLogFormatVersion(); err != nil {
		return err
	}
	if err := lw.OutputStartTime(startMs); err != nil {
		return err
	}
	if err := lw.OutputBaseTime(startMs); err != nil {
		return err
	}
	lw.SetBaseTime(startMs)
	if err := lw.OutputLegend(); err != nil {
		return err
	}
	for i, iv := range r.Intervals {
		if iv.Hist == "" {
			continue
		}
		h, err := hdrhistogram.Decode([]byte(iv.Hist))
		if err != nil {
			return fmt.Errorf("loadtest: interval %d histogram: %w", i, err)
		}
		h.SetStartTimeMs(startMs + int64(iv.Start*1e3))
		h.SetEndTimeMs(startMs + int64((iv.Start+iv.Length)*1e3))
		if err := lw.OutputIntervalHistogram(h); err != nil {
			return err
		}
	}
	return nil
}
