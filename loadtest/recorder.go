package loadtest

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// histNames are the distributions a Result carries, in report order:
// latency (intended start to end of a session), wait (how late it began),
// connect, ttfb, rtt.
var histNames = []string{"latency", "wait", "connect", "ttfb", "rtt"}

// Histogram range: 1 µs .. 5 min in nanoseconds, 3 significant digits.
const (
	histLow  = int64(time.Microsecond)
	histHigh = int64(5 * time.Minute)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histLow, histHigh, 3) }

func clampNS(d time.Duration) int64 { return min(max(int64(d), histLow), histHigh) }

// outcome is one finished session as a worker reports it.
type outcome struct {
	intended time.Time // when the schedule wanted it (closed loop: = began)
	began    time.Time // zero: a bulk stream's or a failed connect's, = intended
	connect  time.Duration
	ttfb     time.Duration
	rtt      time.Duration // requests > 1: the slowest round trip
	requests uint64
	// trips: every round trip was recorded already (keep-alive), so rtt
	// is not recorded again.
	trips bool
	// perRequest: the latency was recorded per round trip (open-loop
	// keep-alive), so the session's is not.
	perRequest bool
	sent       uint64
	rcvd       uint64
	local      netip.AddrPort
	err        error
}

// recorder collects latencies, error counts, the interval figures and the
// session records from all workers. One mutex for all of it: recording is a
// few hundred ns (five histogram updates and a ~25-byte buffered append)
// and even 100k sessions/s across 50 workers barely contends, while
// per-worker histograms would cost ~230 KiB each.
type recorder struct {
	mu                  sync.Mutex // guards everything below but live
	hists               map[string]*hdrhistogram.Histogram
	errs                map[string]uint64
	ok, attempts        uint64
	requests            uint64
	bytesSent, bytesRcv uint64
	iv                  intervalAcc // the interval in progress
	rw                  *recordWriter
	base                time.Time     // the run's start: record starts count from it
	live                atomic.Uint64 // bulk bytes moved so far, both ways (progress)
}

// intervalAcc accumulates the interval in progress.
type intervalAcc struct {
	ok, errs uint64
	kinds    map[string]uint64
	bytes    uint64
	hist     *hdrhistogram.Histogram // latency
}

func newRecorder() *recorder {
	r := &recorder{hists: map[string]*hdrhistogram.Histogram{}, errs: make(map[string]uint64, len(ErrorKinds)), base: time.Now()}
	for _, n := range histNames {
		r.hists[n] = newHist()
	}
	for _, k := range ErrorKinds {
		r.errs[k] = 0
	}
	r.iv = intervalAcc{kinds: map[string]uint64{}, hist: newHist()}
	return r
}

// end records one finished session now.
func (r *recorder) end(o *outcome) { r.endAt(o, time.Now()) }

// endAt records one session that finished at now.
func (r *recorder) endAt(o *outcome, now time.Time) {
	if o.began.IsZero() {
		o.began = now
	}
	if o.intended.IsZero() {
		o.intended = o.began
	}
	wait, dur := o.began.Sub(o.intended), now.Sub(o.began)
	kind := Classify(o.err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	r.bytesSent += o.sent
	r.bytesRcv += o.rcvd
	r.iv.bytes += o.sent + o.rcvd
	if !o.perRequest {
		_ = r.hists["latency"].RecordValue(clampNS(wait + dur))
		_ = r.iv.hist.RecordValue(clampNS(wait + dur))
		_ = r.hists["wait"].RecordValue(clampNS(wait))
	}
	if o.connect > 0 {
		_ = r.hists["connect"].RecordValue(clampNS(o.connect))
	}
	if o.ttfb > 0 {
		_ = r.hists["ttfb"].RecordValue(clampNS(o.ttfb))
	}
	if o.rtt > 0 && !o.trips {
		_ = r.hists["rtt"].RecordValue(clampNS(o.rtt))
	}
	if kind != "" {
		r.errs[kind]++
		r.iv.errs++
		r.iv.kinds[kind]++
	} else {
		r.ok++
		r.iv.ok++
	}
	if r.rw != nil {
		r.rw.add(&SessionRecord{
			Start: o.intended.Sub(r.base), Wait: wait, Connect: o.connect, TTFB: o.ttfb, RTT: o.rtt, Duration: dur,
			Requests: o.requests, Sent: o.sent, Received: o.rcvd, Kind: kind, Source: o.local,
		})
	}
}

// roundTrip records one completed rr round trip of a keep-alive session;
// in open loop (due set) also its latency from when it was due.
func (r *recorder) roundTrip(rtt time.Duration, due time.Time) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	_ = r.hists["rtt"].RecordValue(clampNS(rtt))
	if !due.IsZero() {
		lat := now.Sub(due)
		_ = r.hists["latency"].RecordValue(clampNS(lat))
		_ = r.iv.hist.RecordValue(clampNS(lat))
		_ = r.hists["wait"].RecordValue(clampNS(max(lat-rtt, 0)))
	}
}

// connectOnly records a connect time without counting a session.
func (r *recorder) connectOnly(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.hists["connect"].RecordValue(clampNS(d))
}

func (r *recorder) snapshot() (ok, attempts, errs uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, r.attempts, r.attempts - r.ok
}

// cut ends the interval in progress at now and returns it.
func (r *recorder) cut(from, now time.Time, bulkBytes uint64) Interval {
	r.mu.Lock()
	acc := r.iv
	r.iv = intervalAcc{kinds: map[string]uint64{}, hist: newHist()}
	r.mu.Unlock()
	iv := Interval{
		Start: from.Sub(r.base).Seconds(), Length: now.Sub(from).Seconds(),
		Sessions: acc.ok, ErrorsTotal: acc.errs, Bytes: acc.bytes, Errors: acc.kinds,
	}
	if bulkBytes > 0 {
		iv.Bytes = bulkBytes // bulk streams end only at the end: count bytes as they move
	}
	iv.setHist(acc.hist)
	return iv
}

// fill copies the recorder's totals into res and derives the rates.
func (r *recorder) fill(res *Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res.StartUnixNano = r.base.UnixNano()
	res.Sessions, res.Attempts, res.Requests = r.ok, r.attempts, r.requests
	res.Errors = make(map[string]uint64, len(r.errs))
	for k, v := range r.errs {
		res.Errors[k] = v
		res.ErrorsTotal += v
	}
	res.BytesSent, res.BytesReceived = r.bytesSent, r.bytesRcv
	res.setHists(r.hists)
	res.rates()
}
