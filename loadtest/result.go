package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Percentiles summarises one latency distribution. JSON field names are
// listed in doc.go; values there are microseconds.
type Percentiles struct {
	Count                    int64
	P50, P90, P99, P999, Max time.Duration
}

// MarshalJSON writes microseconds with stable names.
func (p Percentiles) MarshalJSON() ([]byte, error) {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return json.Marshal(struct {
		Count int64   `json:"count"`
		P50   float64 `json:"p50_us"`
		P90   float64 `json:"p90_us"`
		P99   float64 `json:"p99_us"`
		P999  float64 `json:"p999_us"`
		Max   float64 `json:"max_us"`
	}{p.Count, us(p.P50), us(p.P90), us(p.P99), us(p.P999), us(p.Max)})
}

// StreamResult is one bulk stream.
type StreamResult struct {
	BytesSent     uint64  `json:"bytes_sent"`
	BytesReceived uint64  `json:"bytes_received"`
	BitsPerSec    float64 `json:"bits_per_sec"`
	Error         string  `json:"error,omitempty"` // error kind, "" if clean
}

// Result is one Run's outcome. See doc.go for the JSON field names, which
// are stable.
type Result struct {
	Mode   string `json:"mode"`
	Target string `json:"target"`
	// Sessions is the number of sessions that completed cleanly (rr, storm),
	// were opened and proven (idle), or streams that ran (bulk).
	Sessions uint64 `json:"sessions"`
	// Attempts is the number of sessions started (Sessions + failed ones).
	Attempts uint64 `json:"attempts"`
	// Errors counts failed sessions by kind (see ErrorKinds); every kind is
	// present, zero or not.
	Errors      map[string]uint64 `json:"errors"`
	ErrorsTotal uint64            `json:"errors_total"`

	Elapsed        time.Duration `json:"-"`
	SessionsPerSec float64       `json:"sessions_per_sec"`
	// Requests counts rr round trips that completed (Sessions × --requests
	// when none failed); RequestsPerSec is their rate.
	Requests       uint64  `json:"requests"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	BytesSent      uint64  `json:"bytes_sent"`
	BytesReceived  uint64  `json:"bytes_received"`
	BytesPerSec    float64 `json:"bytes_per_sec"` // sent+received
	BitsPerSec     float64 `json:"bits_per_sec"`

	// Latency is each session's time from its intended start to its end
	// (closed loop: from its start); Wait is how late sessions began after
	// their intended start (open loop; closed loop: 0).
	Latency Percentiles `json:"latency"`
	Wait    Percentiles `json:"wait"`
	Connect Percentiles `json:"connect"`
	TTFB    Percentiles `json:"ttfb"`
	RTT     Percentiles `json:"rtt"`

	// StartUnixNano is when the run started (intervals and records count
	// from it).
	StartUnixNano int64 `json:"start_unix_ns"`
	// Rate is the open-loop rate asked for (--rate), StartedPerSec the
	// rate sessions were actually started at; RateShortfall, if not
	// empty, says that the rate was not reached and why.
	Rate          float64 `json:"rate,omitempty"`
	StartedPerSec float64 `json:"started_per_sec,omitempty"`
	RateShortfall string  `json:"rate_shortfall,omitempty"`
	// Intervals are the per-period figures (LoadConfig.Interval).
	Intervals []Interval `json:"intervals,omitempty"`

	// MaxInflightConnectsSeen is the most connects ever outstanding at once.
	MaxInflightConnectsSeen int64 `json:"max_inflight_connects_seen"`

	Streams []StreamResult `json:"streams,omitempty"`

	// Idle mode only: time to open all sessions, and RSS in bytes of this
	// process (Self*) and of LoadConfig.PID plus PIDs summed (Target*)
	// before the sessions were opened and while they were all held.
	IdleOpenTime        time.Duration `json:"-"`
	SelfRSSBefore       uint64        `json:"self_rss_before_bytes,omitempty"`
	SelfRSSAfter        uint64        `json:"self_rss_after_bytes,omitempty"`
	SelfRSSPerSession   float64       `json:"self_rss_per_session_bytes,omitempty"`
	TargetPID           int           `json:"target_pid,omitempty"`
	TargetPIDs          []int         `json:"target_pids,omitempty"`
	TargetRSSBefore     uint64        `json:"target_rss_before_bytes,omitempty"`
	TargetRSSAfter      uint64        `json:"target_rss_after_bytes,omitempty"`
	TargetRSSPerSession float64       `json:"target_rss_per_session_bytes,omitempty"`

	// Procs is how many processes made the run (RunProcs); 0 or 1: one.
	Procs int `json:"procs,omitempty"`
	// Histograms are the latency, wait, connect, ttfb and rtt distributions themselves
	// (HdrHistogram's V2 compressed base64 encoding, nanoseconds), so that
	// runs merge exactly (Merge): histograms added, never percentiles.
	Histograms map[string]string `json:"histograms,omitempty"`
}

// JSON is the result as one JSON object (field names in doc.go).
func (r *Result) JSON() ([]byte, error) {
	type plain Result // drops the methods, so no recursion
	return json.Marshal(struct {
		*plain
		ElapsedSec  float64 `json:"elapsed_s"`
		IdleOpenSec float64 `json:"idle_open_s,omitempty"`
	}{(*plain)(r), r.Elapsed.Seconds(), r.IdleOpenTime.Seconds()})
}

// WriteSummary writes a human-readable table.
func (r *Result) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("mode\t%s\ttarget\t%s\n", r.Mode, r.Target)
	p("sessions\t%d ok / %d attempted\telapsed\t%.3fs\n", r.Sessions, r.Attempts, r.Elapsed.Seconds())
	p("rate\t%.0f sessions/s\tthroughput\t%.3f Gbit/s (%s/s)\n", r.SessionsPerSec, r.BitsPerSec/1e9, human(r.BytesPerSec))
	if r.Requests > r.Sessions {
		p("requests\t%d round trips\trate\t%.0f requests/s\n", r.Requests, r.RequestsPerSec)
	}
	p("bytes\t%d sent\t\t%d received\n", r.BytesSent, r.BytesReceived)
	kinds := make([]string, 0, len(r.Errors))
	for k, v := range r.Errors {
		if v > 0 {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
		}
	}
	sort.Strings(kinds)
	p("errors\t%d\t%v\n", r.ErrorsTotal, kinds)
	p("max connects in flight\t%d\n", r.MaxInflightConnectsSeen)
	if r.Rate > 0 {
		p("open loop\t%.0f/s asked\t%.0f/s started\t%s\n", r.Rate, r.StartedPerSec, r.RateShortfall)
	}
	p("\nlatency\tcount\tp50\tp90\tp99\tp99.9\tmax\n")
	for _, l := range []struct {
		name string
		p    Percentiles
	}{{"session", r.Latency}, {"wait", r.Wait}, {"connect", r.Connect}, {"ttfb", r.TTFB}, {"rtt", r.RTT}} {
		if l.name == "wait" && l.p.Max < time.Millisecond {
			continue // closed loop, or an open loop that kept its schedule
		}
		if l.p.Count == 0 {
			continue
		}
		p("%s\t%d\t%v\t%v\t%v\t%v\t%v\n", l.name, l.p.Count, l.p.P50, l.p.P90, l.p.P99, l.p.P999, l.p.Max)
	}
	for i, s := range r.Streams {
		if i == 0 {
			p("\nstream\tsent\treceived\tGbit/s\terror\n")
		}
		p("%d\t%d\t%d\t%.3f\t%s\n", i, s.BytesSent, s.BytesReceived, s.BitsPerSec/1e9, s.Error)
	}
	if r.Mode == ModeIdle {
		p("\nidle open time\t%.3fs\n", r.IdleOpenTime.Seconds())
		p("self RSS\t%s -> %s\t%.0f B/session\n", human(float64(r.SelfRSSBefore)), human(float64(r.SelfRSSAfter)), r.SelfRSSPerSession)
		if r.TargetPID > 0 {
			p("pid %v RSS\t%s -> %s\t%.0f B/session\n", r.TargetPIDs, human(float64(r.TargetRSSBefore)), human(float64(r.TargetRSSAfter)), r.TargetRSSPerSession)
		}
	}
	return tw.Flush()
}

func human(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// setHists sets the percentiles and the encoded histograms from hs.
func (r *Result) setHists(hs map[string]*hdrhistogram.Histogram) {
	r.Latency, r.Wait = percentiles(hs["latency"]), percentiles(hs["wait"])
	r.Connect, r.TTFB, r.RTT = percentiles(hs["connect"]), percentiles(hs["ttfb"]), percentiles(hs["rtt"])
	r.Histograms = encodeHists(hs)
}

// rates derives the per-second figures from the counts and Elapsed.
func (r *Result) rates() {
	if s := r.Elapsed.Seconds(); s > 0 {
		r.SessionsPerSec = float64(r.Sessions) / s
		r.RequestsPerSec = float64(r.Requests) / s
		r.BytesPerSec = float64(r.BytesSent+r.BytesReceived) / s
		r.BitsPerSec = r.BytesPerSec * 8
	}
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	q := func(p float64) time.Duration { return time.Duration(h.ValueAtQuantile(p)) }
	return Percentiles{Count: h.TotalCount(), P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), Max: time.Duration(h.Max())}
}
