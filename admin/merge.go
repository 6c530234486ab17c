package admin

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// Families are one process's metric families by name, as a scrape parsed
// them.
type Families map[string]*dto.MetricFamily

// Merger is a multi-process master's /metrics: its own registry plus every
// worker's metrics, merged so that the relayd_* series are the totals over
// the workers — exactly the sum of the workers' counters — and the
// per-process series (go_*, process_*, and those with a loop label) keep
// one series per process with a worker label ("master" for the master).
//
// Gauges are summed too (sessions active, connects in flight), except the
// ones that state a fact rather than count: relayd_upstream_up is the
// minimum over workers (down as soon as one worker sees it down, each worker
// judges health itself), relayd_build_info and relayd_listener_info the
// maximum. A worker that exits leaves its counters and histograms as they
// were at its last scrape (Retire), so the totals never go backwards when
// a worker is replaced; what it counted after that scrape is lost.
type Merger struct {
	own    prometheus.Gatherer
	scrape func(ctx context.Context, full bool) map[int]Families

	mu      sync.Mutex
	last    map[int]Families // each worker's last good scrape
	retired Families         // counters and histograms of exited workers
}

// NewMerger merges the registry of the Server it is given to (Config.Merger)
// with what scrape returns: each running worker's families by index (a
// worker that did not answer is left out); full: all of them (/metrics),
// else relayd's own only (RelayPath: what Refresh needs, at a fraction of
// the cost — the Go and process collectors read the runtime and /proc).
func NewMerger(scrape func(ctx context.Context, full bool) map[int]Families) *Merger {
	return &Merger{own: prometheus.NewRegistry(), scrape: scrape, last: map[int]Families{}, retired: Families{}}
}

// Retire folds worker w's last scraped counters and histograms into the
// totals for good; the master calls it when the worker has exited.
func (m *Merger) Retire(w int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fams := m.last[w]
	delete(m.last, w)
	for name, f := range fams {
		if !summed(name, f) {
			continue
		}
		if t := f.GetType(); t != dto.MetricType_COUNTER && t != dto.MetricType_HISTOGRAM {
			continue
		}
		into := m.retired[name]
		if into == nil {
			into = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type}
			m.retired[name] = into
		}
		addFamily(into, f, nil)
	}
}

// Refresh scrapes the workers' relayd series and keeps them for Retire (the
// master calls it every few seconds, so a killed worker's counts are recent).
func (m *Merger) Refresh(ctx context.Context) { m.refresh(ctx, false) }

func (m *Merger) refresh(ctx context.Context, full bool) map[int]Families {
	got := m.scrape(ctx, full)
	m.mu.Lock()
	for w, f := range got {
		m.last[w] = f
	}
	m.mu.Unlock()
	return got
}

// Gather implements prometheus.Gatherer.
func (m *Merger) Gather() ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	workers := m.refresh(ctx, true)
	own, err := m.own.Gather()
	out := map[string]*dto.MetricFamily{}
	add := func(f *dto.MetricFamily, worker string) {
		into := out[f.GetName()]
		if into == nil {
			into = &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type}
			out[f.GetName()] = into
		}
		if worker != "" {
			addFamily(into, f, &dto.LabelPair{Name: proto.String("worker"), Value: proto.String(worker)})
			return
		}
		addFamily(into, f, nil)
	}
	for _, f := range own {
		if perProcess(f.GetName(), f) {
			add(f, "master")
		} else {
			add(f, "")
		}
	}
	m.mu.Lock()
	for _, f := range m.retired {
		add(f, "")
	}
	m.mu.Unlock()
	idx := make([]int, 0, len(workers))
	for w := range workers {
		idx = append(idx, w)
	}
	slices.Sort(idx)
	for _, w := range idx {
		for name, f := range workers[w] {
			if summed(name, f) {
				add(f, "")
			} else {
				add(f, strconv.Itoa(w))
			}
		}
	}
	fams := make([]*dto.MetricFamily, 0, len(out))
	for _, f := range out {
		slices.SortFunc(f.Metric, func(a, b *dto.Metric) int { return strings.Compare(labelKey(a.Label), labelKey(b.Label)) })
		fams = append(fams, f)
	}
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return fams, err
}

// perProcess families describe one process and are never summed.
func perProcess(name string, f *dto.MetricFamily) bool {
	if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
		return true
	}
	if len(f.Metric) == 0 {
		return false
	}
	for _, l := range f.Metric[0].Label { // a family's series share their label names
		if l.GetName() == "loop" {
			return true // loop 0 of one worker is not loop 0 of another
		}
	}
	return false
}

func summed(name string, f *dto.MetricFamily) bool { return !perProcess(name, f) }

// combine says how two gauge values of one series merge.
func combine(name string, a, b float64) float64 {
	switch name {
	case "relayd_upstream_up":
		return min(a, b)
	case "relayd_build_info", "relayd_listener_info":
		return max(a, b)
	}
	return a + b
}

// addFamily adds f's metrics into into: series with the same labels are
// combined, new ones appended. extra, if set, is a label added to each of
// f's series first (and makes them distinct per process).
func addFamily(into, f *dto.MetricFamily, extra *dto.LabelPair) {
	index := make(map[string]*dto.Metric, len(into.Metric))
	for _, mt := range into.Metric {
		index[labelKey(mt.Label)] = mt
	}
	for _, mt := range f.Metric {
		mt = proto.Clone(mt).(*dto.Metric)
		if extra != nil {
			mt.Label = append(mt.Label, proto.Clone(extra).(*dto.LabelPair))
			slices.SortFunc(mt.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
		mt.TimestampMs = nil
		k := labelKey(mt.Label)
		have := index[k]
		if have == nil {
			into.Metric = append(into.Metric, mt)
			index[k] = mt
			continue
		}
		switch {
		case have.Counter != nil && mt.Counter != nil:
			have.Counter.Value = proto.Float64(have.Counter.GetValue() + mt.Counter.GetValue())
		case have.Gauge != nil && mt.Gauge != nil:
			have.Gauge.Value = proto.Float64(combine(into.GetName(), have.Gauge.GetValue(), mt.Gauge.GetValue()))
		case have.Untyped != nil && mt.Untyped != nil:
			have.Untyped.Value = proto.Float64(have.Untyped.GetValue() + mt.Untyped.GetValue())
		case have.Histogram != nil && mt.Histogram != nil:
			addHistogram(have.Histogram, mt.Histogram)
		}
	}
}

// addHistogram adds b into a; both come from the same code, so their
// buckets have the same bounds (a bucket bound that differs is left out
// rather than added wrongly).
func addHistogram(a, b *dto.Histogram) {
	a.SampleCount = proto.Uint64(a.GetSampleCount() + b.GetSampleCount())
	a.SampleSum = proto.Float64(a.GetSampleSum() + b.GetSampleSum())
	for i, bk := range a.Bucket {
		if i < len(b.Bucket) && b.Bucket[i].GetUpperBound() == bk.GetUpperBound() {
			bk.CumulativeCount = proto.Uint64(bk.GetCumulativeCount() + b.Bucket[i].GetCumulativeCount())
		}
	}
}

func labelKey(ls []*dto.LabelPair) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.GetName())
		b.WriteByte(0)
		b.WriteString(l.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}

// RelayPath serves relayd's own series only (no Go or process collector):
// what a master needs to keep a worker's counters.
const RelayPath = "/metrics/relayd"

// ScrapeUnix fetches and parses the text metrics at urlPath ("/metrics" or
// RelayPath) of the admin endpoint served on the Unix socket at path (a
// worker's).
func ScrapeUnix(ctx context.Context, path, urlPath string) (Families, error) {
	tr := unixTransport(path)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker"+urlPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin: scrape %s: %s", path, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("admin: scrape %s: %w", path, err)
	}
	return fams, nil
}
