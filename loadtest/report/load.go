package report

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/relayd/relayd/loadtest"
)

// Limits of what one run's charts hold, whatever its size.
const (
	// MaxPoints is the most sessions drawn one point each; a run with more
	// is drawn as a heat map.
	MaxPoints = 5000
	// maxBins is the most time bins of a run's over-time charts.
	maxBins = 200
	// latBins is the number of latency rows of a heat map (log scale).
	latBins = 48
	// DefaultSlowest is how many of a run's slowest sessions are listed.
	DefaultSlowest = 20
)

// Latency range of the charts' log axes, nanoseconds.
const (
	latLow  = 1e3 // 1 µs
	latHigh = 3e11
)

// Run is one input of a report: a record file or a JSON result, reduced
// to what the report shows.
type Run struct {
	Name   string
	Path   string
	Mode   string
	Target string
	// Records is true when the run came from a record file: per-session
	// data (points or heat map, slowest sessions) exists.
	Records bool
	Rate    float64
	// Summary figures.
	Sessions, Errors uint64
	// Requests are keep-alive round trips (more than Sessions): the
	// run's latency is then per round trip.
	Requests     uint64
	ErrorKinds   map[string]uint64
	Elapsed      time.Duration
	Latency      *hdrhistogram.Histogram // the spectrum
	Connect, RTT *hdrhistogram.Histogram // may be nil (a JSON without them)
	// Over time.
	BinWidth float64 // seconds
	Bins     []Bin
	// Points are every session when there are at most MaxPoints; else nil
	// and Heat holds the heat map.
	Points  []Point
	Heat    [][]uint32 // [time bin][latency row]
	Slowest []loadtest.SessionRecord
	// Note says what the input lacked (e.g. a rate shortfall).
	Note string
}

// Bin is one period of a run.
type Bin struct {
	Start, Length float64 // seconds from the run's start; seconds
	OK, Errors    uint64
	Bytes         uint64
	P50, P99, Max float64 // session latency, ns
}

// Point is one session of a small run.
type Point struct {
	T       float64 // seconds from the run's start (intended start)
	Latency float64 // ns
	Failed  bool
}

// Load reads one input: "path" or "name=path", a record file (by its
// magic) or a JSON result of `relayd load --json`. With a name, path may
// be a pattern or several files, which make one run: record files read as
// one, JSON results merged exactly (loadtest.Merge) — the processes or
// machines of one distributed run.
func Load(arg string, slowest int) (*Run, error) {
	name, path := "", arg
	if i := strings.IndexByte(arg, '='); i > 0 {
		name, path = arg[:i], arg[i+1:]
	}
	paths := []string{path}
	if strings.ContainsAny(path, "*?[") {
		m, err := filepath.Glob(path)
		if err != nil || len(m) == 0 {
			return nil, fmt.Errorf("report: %q matches no file", path)
		}
		paths = m
	}
	if name == "" {
		if len(paths) > 1 {
			return nil, fmt.Errorf("report: %q: several files make one run only with a name (name=%s)", path, path)
		}
		name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	recs := 0
	for _, p := range paths {
		isRec, err := loadtest.IsRecordFile(p)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		recs += btoi(isRec)
	}
	switch {
	case recs == len(paths):
		return loadRecords(name, paths, slowest)
	case recs > 0:
		return nil, fmt.Errorf("report: %s: one run is made of record files or of JSON results, not both", path)
	}
	var parts []*loadtest.Result
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		res, err := loadtest.ParseResult(b)
		if err != nil {
			return nil, fmt.Errorf("report: %s: neither a record file nor a JSON result: %w", p, err)
		}
		parts = append(parts, res)
	}
	res := parts[0]
	if len(parts) > 1 {
		var err error
		if res, err = loadtest.Merge(parts); err != nil {
			return nil, err
		}
	}
	return fromResult(name, strings.Join(paths, " "), res)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fromResult makes a Run of a JSON result: spectrum from its histograms,
// over-time series from its intervals.
func fromResult(name, path string, res *loadtest.Result) (*Run, error) {
	r := &Run{Name: name, Path: path, Mode: res.Mode, Target: res.Target, Rate: res.Rate,
		Sessions: res.Sessions, Errors: res.ErrorsTotal, ErrorKinds: res.Errors, Elapsed: res.Elapsed, Note: res.RateShortfall}
	hs := map[string]*hdrhistogram.Histogram{}
	for _, n := range []string{"latency", "connect", "rtt"} {
		if s, ok := res.Histograms[n]; ok {
			h, err := hdrhistogram.Decode([]byte(s))
			if err != nil {
				return nil, fmt.Errorf("report: %s: %s histogram: %w", path, n, err)
			}
			hs[n] = h
		}
	}
	r.Latency, r.Connect, r.RTT = hs["latency"], hs["connect"], hs["rtt"]
	if res.Requests > res.Sessions {
		// Keep-alive: a session is the whole run; what a user waits
		// for is each round trip (in open loop, from when it was due).
		r.Requests = res.Requests
		if res.Rate == 0 {
			r.Latency = r.RTT
		}
		r.Note = strings.TrimPrefix(r.Note+"; keep-alive: latency is per round trip", "; ")
	}
	if r.Latency == nil || r.Latency.TotalCount() == 0 {
		r.Latency = r.RTT // a result from before session latency was kept
	}
	if r.Latency == nil {
		return nil, fmt.Errorf("report: %s: the result has no latency histogram", path)
	}
	for _, iv := range res.Intervals {
		r.BinWidth = max(r.BinWidth, iv.Length)
		r.Bins = append(r.Bins, Bin{Start: iv.Start, Length: iv.Length, OK: iv.Sessions, Errors: iv.ErrorsTotal, Bytes: iv.Bytes,
			P50: iv.P50 * 1e3, P99: iv.P99 * 1e3, Max: iv.Max * 1e3})
	}
	return r, nil
}

// loadRecords reads a record file twice: once for its time range, once to
// bin it. Memory is bounded by the bins, MaxPoints and the slowest list,
// whatever the number of sessions.
func loadRecords(name string, paths []string, slowest int) (*Run, error) {
	r := &Run{Name: name, Path: strings.Join(paths, " "), Records: true, ErrorKinds: map[string]uint64{}}
	path := r.Path
	// readAll reads every file's records in turn.
	readAll := func(fn func(h *loadtest.RecordHeader, s *loadtest.SessionRecord) error) error {
		for _, p := range paths {
			if err := loadtest.ReadRecords(p, fn); err != nil {
				return err
			}
		}
		return nil
	}
	var minBase int64
	var first = true
	var maxT float64
	var n uint64
	err := readAll(func(h *loadtest.RecordHeader, s *loadtest.SessionRecord) error {
		if first {
			r.Mode, r.Target, r.Rate, minBase, first = h.Mode, h.Target, h.Rate, h.BaseUnixNano, false
		}
		if h.Mode != r.Mode {
			return fmt.Errorf("%w: %s mixes %s and %s runs", loadtest.ErrBadConfig, path, r.Mode, h.Mode)
		}
		minBase = min(minBase, h.BaseUnixNano)
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("report: %s holds no sessions", path)
	}
	// Second pass: time offsets from the earliest segment's base.
	at := func(h *loadtest.RecordHeader, s *loadtest.SessionRecord) float64 {
		return float64(h.BaseUnixNano-minBase)/1e9 + s.Start.Seconds()
	}
	_ = readAll(func(h *loadtest.RecordHeader, s *loadtest.SessionRecord) error {
		maxT = max(maxT, at(h, s)+s.Latency().Seconds())
		return nil
	})
	r.BinWidth = binWidth(maxT)
	nb := int(maxT/r.BinWidth) + 1
	bins := make([]*hdrhistogram.Histogram, nb)
	r.Bins = make([]Bin, nb)
	heat := make([][]uint32, nb)
	r.Latency, r.Connect, r.RTT = newHist(), newHist(), newHist()
	slow := &slowHeap{}
	keepPoints := n <= MaxPoints
	err = readAll(func(h *loadtest.RecordHeader, s *loadtest.SessionRecord) error {
		t := at(h, s)
		lat := s.Latency()
		// A session is binned by when it was due (the chart's x), so a
		// stall shows over the sessions due during it.
		b := min(max(int(t/r.BinWidth), 0), nb-1)
		if bins[b] == nil {
			bins[b] = hdrhistogram.New(int64(latLow), int64(latHigh), 2)
			heat[b] = make([]uint32, latBins)
		}
		ns := clamp(float64(lat))
		_ = bins[b].RecordValue(int64(ns))
		heat[b][latRow(ns)]++
		_ = r.Latency.RecordValue(int64(ns))
		if s.Connect > 0 {
			_ = r.Connect.RecordValue(int64(clamp(float64(s.Connect))))
		}
		if s.RTT > 0 {
			_ = r.RTT.RecordValue(int64(clamp(float64(s.RTT))))
		}
		r.Bins[b].Bytes += s.Sent + s.Received
		if s.Kind != "" {
			r.Errors++
			r.ErrorKinds[s.Kind]++
			r.Bins[b].Errors++
		} else {
			r.Sessions++
			r.Bins[b].OK++
		}
		r.Elapsed = max(r.Elapsed, time.Duration((t+lat.Seconds())*1e9))
		if keepPoints {
			r.Points = append(r.Points, Point{T: t, Latency: float64(lat), Failed: s.Kind != ""})
		}
		if slowest > 0 {
			rec := *s
			rec.Start = time.Duration(t * 1e9) // from the run's start, as the charts
			if slow.Len() < slowest {
				heap.Push(slow, rec)
			} else if lat > (*slow)[0].Latency() {
				(*slow)[0] = rec
				heap.Fix(slow, 0)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range r.Bins {
		r.Bins[i].Start, r.Bins[i].Length = float64(i)*r.BinWidth, r.BinWidth
		if h := bins[i]; h != nil {
			r.Bins[i].P50, r.Bins[i].P99, r.Bins[i].Max = float64(h.ValueAtQuantile(50)), float64(h.ValueAtQuantile(99)), float64(h.Max())
		}
	}
	if !keepPoints {
		r.Heat = heat
	}
	r.Slowest = make([]loadtest.SessionRecord, slow.Len())
	for i := len(r.Slowest) - 1; i >= 0; i-- {
		r.Slowest[i] = heap.Pop(slow).(loadtest.SessionRecord)
	}
	return r, nil
}

// binWidth is the time bin for a run of span seconds: whole seconds
// (one per interval report), wider for long runs so at most maxBins.
func binWidth(span float64) float64 {
	w := 1.0
	for span/w > maxBins {
		w *= 2
	}
	if span < 10 {
		// Short runs: finer bins, down to 100 ms, so there is a shape.
		for w/2 >= 0.1 && span/w < maxBins/4 {
			w /= 2
		}
	}
	return w
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(int64(latLow), int64(latHigh), 3) }

func clamp(ns float64) float64 { return min(max(ns, latLow), latHigh) }

// latRow is the heat map row of a latency: latBins rows spaced evenly on
// a log scale from latLow to latHigh.
func latRow(ns float64) int {
	f := math.Log(clamp(ns)/latLow) / math.Log(latHigh/latLow)
	return min(int(f*latBins), latBins-1)
}

// slowHeap is a min-heap by latency: the root is the fastest of the
// slowest kept so far.
type slowHeap []loadtest.SessionRecord

func (h slowHeap) Len() int           { return len(h) }
func (h slowHeap) Less(i, j int) bool { return h[i].Latency() < h[j].Latency() }
func (h slowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *slowHeap) Push(x any)        { *h = append(*h, x.(loadtest.SessionRecord)) }
func (h *slowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// LoadAll loads every input, in order, and refuses none silently.
func LoadAll(args []string, slowest int) ([]*Run, error) {
	if len(args) == 0 {
		return nil, errors.New("report: no input (record files or JSON results)")
	}
	var runs []*Run
	seen := map[string]int{}
	var expanded []string
	for _, a := range args {
		// An unnamed pattern: one run a file.
		if !strings.Contains(a, "=") && strings.ContainsAny(a, "*?[") {
			m, err := filepath.Glob(a)
			if err != nil || len(m) == 0 {
				return nil, fmt.Errorf("report: %q matches no file", a)
			}
			expanded = append(expanded, m...)
			continue
		}
		expanded = append(expanded, a)
	}
	for _, a := range expanded {
		r, err := Load(a, slowest)
		if err != nil {
			return nil, err
		}
		base := r.Name
		if k := seen[base]; k > 0 {
			r.Name = fmt.Sprintf("%s#%d", base, k+1)
		}
		seen[base]++
		runs = append(runs, r)
	}
	return runs, nil
}
