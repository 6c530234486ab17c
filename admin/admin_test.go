package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixedRelay is a snapshot with a distinct number in every field, so a
// field exported under the wrong name cannot match.
func fixedRelay() relay.Stats {
	closed := func(base uint64) map[string]uint64 {
		m := map[string]uint64{}
		for i, r := range relay.Reasons() {
			if i%2 == 0 { // leave some reasons out: they must still appear as 0
				m[r.String()] = base + uint64(i)
			}
		}
		return m
	}
	return relay.Stats{
		Accepted:      1001,
		Active:        17,
		Closed:        closed(100),
		AcceptErrors:  map[string]uint64{"emfile": 3, "enfile": 0, "enobufs": 1, "other": 2},
		AcceptBackoff: 4,
		BytesUp:       123456789,
		BytesDown:     987654321,
		Pauses:        55,
		Resumes:       54,
		BufsHeld:      9,
		Loops:         []relay.LoopStats{{Active: 10, BufsHeld: 5, Queue: 3}, {Active: 7, BufsHeld: 4}},
		Listeners: map[string]relay.ListenerStats{
			"web": {Addr: netip.MustParseAddrPort("127.0.0.1:7000"), Active: 12, Accepted: 900,
				Closed: closed(10), BytesUp: 1000, BytesDown: 2000},
			"db": {Addr: netip.MustParseAddrPort("[::1]:7001"), Active: 5, Accepted: 101,
				Closed: map[string]uint64{"refused": 7}, BytesUp: 30, BytesDown: 40},
		},
	}
}

func fixedConnector() connector.Stats {
	s := connector.Stats{
		Queued:            6,
		Inflight:          []int{3, 1},
		InflightHighWater: []int{32, 29},
		Submitted:         2000,
		QueueRejected:     8,
		Attempts:          2100,
		Connected:         1900,
		Failed:            80,
		Canceled:          12,
		LatencyCount:      13, // deliberately ≠ the bucket sum (12): the export must stay consistent
		LatencySum:        2500 * time.Millisecond,
	}
	s.Failures = [connector.NumClasses]uint64{
		connector.ClassRefused: 50, connector.ClassTimeout: 20, connector.ClassUnreachable: 5,
		connector.ClassAddrNotAvail: 4, connector.ClassOther: 1,
	}
	s.LatencyBuckets[0] = 1                             // ≤1µs
	s.LatencyBuckets[3] = 2                             // ≤8µs
	s.LatencyBuckets[10] = 4                            // ≤1.024ms
	s.LatencyBuckets[connector.NumLatencyBuckets-1] = 5 // >4.194304s: +Inf only
	return s
}

func fixedUpstreams() []connector.UpstreamStats {
	u := connector.UpstreamStats{
		Listener: "web", Addr: netip.MustParseAddrPort("10.0.0.7:80"), Up: false,
		Inflight: 1, Queued: 3, Limit: 1, Connected: 41, QueueTO: 2, Late: 9, Rejected: 4,
		Transitions: 1, Cuts: 5, Checks: 0, CheckFails: 0,
	}
	u.Failures[connector.ClassTimeout] = 3
	return []connector.UpstreamStats{u}
}

func fixedSources() Sources {
	return Sources{
		Relay:      fixedRelay,
		Connector:  fixedConnector,
		Upstreams:  fixedUpstreams,
		LogDropped: func() uint64 { return 77 },
		LogWritten: func() uint64 { return 88888 },
		LogSampled: func() uint64 { return 66 },
		LogWErrs:   func() uint64 { return 3 },
	}
}

// startServer starts an admin server on 127.0.0.1:0 and shuts it down at
// cleanup, failing the test if Shutdown does.
func startServer(tb testing.TB, cfg Config, src Sources) *Server {
	tb.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	s, err := New(cfg, src)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// client is a fresh HTTP client per test whose idle connections are closed
// at cleanup, so goleak sees no transport goroutines.
func client(tb testing.TB) *http.Client {
	tr := &http.Transport{}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func addrURL(s *Server, path string) string { return "http://" + s.Addr().String() + path }

func get(tb testing.TB, c *http.Client, method, u string) (int, http.Header, string) {
	tb.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func scrape(tb testing.TB, c *http.Client, s *Server) map[string]*dto.MetricFamily {
	tb.Helper()
	code, _, body := get(tb, c, http.MethodGet, addrURL(s, "/metrics"))
	if code != http.StatusOK {
		tb.Fatalf("/metrics: status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		tb.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// reasonLines renders one closed_total line per reason, with the values
// fixedRelay's closed(base) gives (odd-indexed reasons absent, hence 0).
func reasonLines(name, labels string, base uint64, override map[string]uint64) string {
	var b strings.Builder
	for i, r := range relay.Reasons() {
		v := uint64(0)
		if override != nil {
			v = override[r.String()]
		} else if i%2 == 0 {
			v = base + uint64(i)
		}
		fmt.Fprintf(&b, "%s{%sreason=%q} %d\n", name, labels, r.String(), v)
	}
	return b.String()
}

func TestMetricsExactValues(t *testing.T) {
	s := startServer(t, Config{Version: "v1.2.3"}, fixedSources())
	c := client(t)

	want := `
# HELP relayd_listener_info Always 1 per listener (including removed ones); addr is the bound address.
# TYPE relayd_listener_info gauge
relayd_listener_info{addr="127.0.0.1:7000",listener="web"} 1
relayd_listener_info{addr="[::1]:7001",listener="db"} 1
# HELP relayd_listener_sessions_active Sessions open right now, per listener.
# TYPE relayd_listener_sessions_active gauge
relayd_listener_sessions_active{listener="web"} 12
relayd_listener_sessions_active{listener="db"} 5
# HELP relayd_listener_sessions_accepted_total Client connections accepted, per listener (including those rejected at once).
# TYPE relayd_listener_sessions_accepted_total counter
relayd_listener_sessions_accepted_total{listener="web"} 900
relayd_listener_sessions_accepted_total{listener="db"} 101
# HELP relayd_listener_sessions_closed_total Sessions ended, per listener and close reason.
# TYPE relayd_listener_sessions_closed_total counter
` + reasonLines("relayd_listener_sessions_closed_total", `listener="web",`, 10, nil) +
		reasonLines("relayd_listener_sessions_closed_total", `listener="db",`, 0, map[string]uint64{"refused": 7}) + `
# HELP relayd_listener_session_bytes_total Bytes relayed by sessions that have ended, per listener and direction (up: client to upstream). Live totals: relayd_bytes_total.
# TYPE relayd_listener_session_bytes_total counter
relayd_listener_session_bytes_total{direction="up",listener="web"} 1000
relayd_listener_session_bytes_total{direction="down",listener="web"} 2000
relayd_listener_session_bytes_total{direction="up",listener="db"} 30
relayd_listener_session_bytes_total{direction="down",listener="db"} 40
# HELP relayd_sessions_accepted_total Client connections accepted, all listeners.
# TYPE relayd_sessions_accepted_total counter
relayd_sessions_accepted_total 1001
# HELP relayd_sessions_active Sessions open right now, all listeners.
# TYPE relayd_sessions_active gauge
relayd_sessions_active 17
# HELP relayd_sessions_closed_total Sessions ended, all listeners, by close reason.
# TYPE relayd_sessions_closed_total counter
` + reasonLines("relayd_sessions_closed_total", "", 100, nil) + `
# HELP relayd_accept_errors_total accept() failures by errno kind.
# TYPE relayd_accept_errors_total counter
relayd_accept_errors_total{kind="emfile"} 3
relayd_accept_errors_total{kind="enfile"} 0
relayd_accept_errors_total{kind="enobufs"} 1
relayd_accept_errors_total{kind="other"} 2
# HELP relayd_accept_backoff_total Accept back-off episodes (EMFILE, ENFILE, ENOBUFS).
# TYPE relayd_accept_backoff_total counter
relayd_accept_backoff_total 4
# HELP relayd_bytes_total Bytes relayed so far including live sessions, by direction (up: client to upstream).
# TYPE relayd_bytes_total counter
relayd_bytes_total{direction="up"} 1.23456789e+08
relayd_bytes_total{direction="down"} 9.87654321e+08
# HELP relayd_backpressure_pauses_total Backpressure episodes begun: a direction stopped being read because its destination refused bytes.
# TYPE relayd_backpressure_pauses_total counter
relayd_backpressure_pauses_total 55
# HELP relayd_backpressure_resumes_total Backpressure episodes ended by draining; pauses minus resumes = paused now plus closed while paused.
# TYPE relayd_backpressure_resumes_total counter
relayd_backpressure_resumes_total 54
# HELP relayd_buffers_held Relay buffers held by sessions right now, all loops.
# TYPE relayd_buffers_held gauge
relayd_buffers_held 9
# HELP relayd_loop_sessions_active Sessions owned by each relay loop right now.
# TYPE relayd_loop_sessions_active gauge
relayd_loop_sessions_active{loop="0"} 10
relayd_loop_sessions_active{loop="1"} 7
# HELP relayd_loop_buffers_held Relay buffers held by each loop's sessions right now.
# TYPE relayd_loop_buffers_held gauge
relayd_loop_buffers_held{loop="0"} 5
relayd_loop_buffers_held{loop="1"} 4
# HELP relayd_loop_queue_depth Tasks waiting in each relay loop's queue (connect results, hand-overs, name answers).
# TYPE relayd_loop_queue_depth gauge
relayd_loop_queue_depth{loop="0"} 3
relayd_loop_queue_depth{loop="1"} 0
# HELP relayd_connector_inflight Upstream connects in progress, per connector worker.
# TYPE relayd_connector_inflight gauge
relayd_connector_inflight{worker="0"} 3
relayd_connector_inflight{worker="1"} 1
# HELP relayd_connector_inflight_high_water Most upstream connects ever in progress at once, per connector worker.
# TYPE relayd_connector_inflight_high_water gauge
relayd_connector_inflight_high_water{worker="0"} 32
relayd_connector_inflight_high_water{worker="1"} 29
# HELP relayd_connector_queued Connect requests waiting for a slot, all upstreams.
# TYPE relayd_connector_queued gauge
relayd_connector_queued 6
# HELP relayd_upstream_up 1 while the upstream is healthy, 0 while it is marked down.
# TYPE relayd_upstream_up gauge
relayd_upstream_up{listener="web",upstream="10.0.0.7:80"} 0
# HELP relayd_upstream_limit Connects the upstream may have in flight now: the adaptive (or fixed) limit; 1 while down (the trial), 0 while an active check owns its recovery.
# TYPE relayd_upstream_limit gauge
relayd_upstream_limit{listener="web",upstream="10.0.0.7:80"} 1
# HELP relayd_upstream_queued Connect requests waiting for the upstream's limit.
# TYPE relayd_upstream_queued gauge
relayd_upstream_queued{listener="web",upstream="10.0.0.7:80"} 3
# HELP relayd_upstream_late_total Attempts to the upstream unanswered past the late threshold (lost SYNs).
# TYPE relayd_upstream_late_total counter
relayd_upstream_late_total{listener="web",upstream="10.0.0.7:80"} 9
# HELP relayd_upstream_transitions_total Health state changes of the upstream (up to down and back).
# TYPE relayd_upstream_transitions_total counter
relayd_upstream_transitions_total{listener="web",upstream="10.0.0.7:80"} 1
# HELP relayd_upstream_failures_total Failed connect attempts to the upstream, by class.
# TYPE relayd_upstream_failures_total counter
relayd_upstream_failures_total{class="addrnotavail",listener="web",upstream="10.0.0.7:80"} 0
relayd_upstream_failures_total{class="other",listener="web",upstream="10.0.0.7:80"} 0
relayd_upstream_failures_total{class="refused",listener="web",upstream="10.0.0.7:80"} 0
relayd_upstream_failures_total{class="timeout",listener="web",upstream="10.0.0.7:80"} 3
relayd_upstream_failures_total{class="unreachable",listener="web",upstream="10.0.0.7:80"} 0
# HELP relayd_connector_requests_total Connect requests accepted by the connector.
# TYPE relayd_connector_requests_total counter
relayd_connector_requests_total 2000
# HELP relayd_connector_queue_rejected_total Connect requests refused because the queue was full (the client is rejected).
# TYPE relayd_connector_queue_rejected_total counter
relayd_connector_queue_rejected_total 8
# HELP relayd_connector_attempts_total Connect attempts started (a failover counts each try).
# TYPE relayd_connector_attempts_total counter
relayd_connector_attempts_total 2100
# HELP relayd_connector_connected_total Requests that got a connected upstream socket.
# TYPE relayd_connector_connected_total counter
relayd_connector_connected_total 1900
# HELP relayd_connector_failed_total Requests whose every try failed.
# TYPE relayd_connector_failed_total counter
relayd_connector_failed_total 80
# HELP relayd_connector_canceled_total Requests canceled because the client went away.
# TYPE relayd_connector_canceled_total counter
relayd_connector_canceled_total 12
# HELP relayd_connector_failures_total Failed connect attempts by class.
# TYPE relayd_connector_failures_total counter
relayd_connector_failures_total{class="refused"} 50
relayd_connector_failures_total{class="timeout"} 20
relayd_connector_failures_total{class="unreachable"} 5
relayd_connector_failures_total{class="addrnotavail"} 4
relayd_connector_failures_total{class="other"} 1
# HELP relayd_log_entries_dropped_total Log entries dropped because the ring was full or the write failed.
# TYPE relayd_log_entries_dropped_total counter
relayd_log_entries_dropped_total 77
# HELP relayd_log_entries_written_total Log entries written.
# TYPE relayd_log_entries_written_total counter
relayd_log_entries_written_total 88888
# HELP relayd_log_entries_sampled_total Ordinary log lines dropped by the sampler (the same message repeated; access lines are never sampled).
# TYPE relayd_log_entries_sampled_total counter
relayd_log_entries_sampled_total 66
# HELP relayd_log_write_errors_total Writes to the log output that failed (disk full, a closed pipe…).
# TYPE relayd_log_write_errors_total counter
relayd_log_write_errors_total 3
`
	names := []string{
		"relayd_listener_info", "relayd_listener_sessions_active", "relayd_listener_sessions_accepted_total",
		"relayd_listener_sessions_closed_total", "relayd_listener_session_bytes_total",
		"relayd_sessions_accepted_total", "relayd_sessions_active", "relayd_sessions_closed_total",
		"relayd_accept_errors_total", "relayd_accept_backoff_total", "relayd_bytes_total",
		"relayd_backpressure_pauses_total", "relayd_backpressure_resumes_total", "relayd_buffers_held",
		"relayd_loop_sessions_active", "relayd_loop_buffers_held", "relayd_loop_queue_depth",
		"relayd_connector_inflight", "relayd_connector_inflight_high_water", "relayd_connector_queued",
		"relayd_upstream_up", "relayd_upstream_limit", "relayd_upstream_queued", "relayd_upstream_late_total",
		"relayd_upstream_transitions_total", "relayd_upstream_failures_total",
		"relayd_connector_requests_total", "relayd_connector_queue_rejected_total",
		"relayd_connector_attempts_total", "relayd_connector_connected_total", "relayd_connector_failed_total",
		"relayd_connector_canceled_total", "relayd_connector_failures_total",
		"relayd_log_entries_dropped_total", "relayd_log_entries_written_total",
		"relayd_log_entries_sampled_total", "relayd_log_write_errors_total",
	}
	if err := testutil.ScrapeAndCompare(addrURL(s, "/metrics"), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections() // ScrapeAndCompare uses the default client

	fams := scrape(t, c, s)

	bi := fams["relayd_build_info"]
	if bi == nil || len(bi.Metric) != 1 || bi.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("relayd_build_info: %v", bi)
	}
	labels := map[string]string{}
	for _, lp := range bi.Metric[0].Label {
		labels[lp.GetName()] = lp.GetValue()
	}
	if labels["version"] != "v1.2.3" || !strings.HasPrefix(labels["goversion"], "go") {
		t.Errorf("relayd_build_info labels = %v, want version v1.2.3 and a goversion", labels)
	}

	// Connect latency: cumulative buckets from the log2 counts, the
	// open-ended last bucket only in +Inf (= count = sum of buckets).
	h := fams["relayd_connector_latency_seconds"]
	if h == nil || h.GetType() != dto.MetricType_HISTOGRAM || len(h.Metric) != 1 {
		t.Fatalf("relayd_connector_latency_seconds: %v", h)
	}
	hist := h.Metric[0].GetHistogram()
	if got := hist.GetSampleCount(); got != 12 {
		t.Errorf("latency count = %d, want 12 (the bucket sum)", got)
	}
	if got := hist.GetSampleSum(); got != 2.5 {
		t.Errorf("latency sum = %v, want 2.5", got)
	}
	// The text format lists +Inf explicitly; the parser keeps it.
	if n := len(hist.Bucket); n != connector.NumLatencyBuckets {
		t.Fatalf("%d buckets, want %d finite + Inf", n, connector.NumLatencyBuckets-1)
	}
	wantCum := map[float64]uint64{
		1e-6: 1, 2e-6: 1, 4e-6: 1, 8e-6: 3, 16e-6: 3, 512e-6: 3, 1024e-6: 7, 2048e-6: 7, 4.194304: 7,
		math.Inf(1): 12,
	}
	var prevBound float64
	for i, b := range hist.Bucket {
		if b.GetUpperBound() <= prevBound {
			t.Errorf("bucket %d bound %v not above %v", i, b.GetUpperBound(), prevBound)
		}
		prevBound = b.GetUpperBound()
		if w, ok := wantCum[b.GetUpperBound()]; ok {
			if b.GetCumulativeCount() != w {
				t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
			}
			delete(wantCum, b.GetUpperBound())
		}
	}
	if len(wantCum) != 0 {
		t.Errorf("buckets missing: %v", wantCum)
	}

	// fds in use vs. limit, from the standard process collector.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if m := fams["process_max_fds"]; m == nil || m.Metric[0].GetGauge().GetValue() != float64(rl.Cur) {
		t.Errorf("process_max_fds = %v, want %d", m, rl.Cur)
	}
	if m := fams["process_open_fds"]; m == nil || m.Metric[0].GetGauge().GetValue() < 3 {
		t.Errorf("process_open_fds = %v, want ≥ 3", m)
	}
	if fams["go_goroutines"] == nil {
		t.Error("go_goroutines missing")
	}
}

// A scrape reads the sources at scrape time: a counter that moved between
// two scrapes shows the new value, nothing cached.
func TestMetricsAreLive(t *testing.T) {
	var accepted, dropped atomic.Uint64
	var calls atomic.Int64
	src := Sources{
		Relay: func() relay.Stats {
			calls.Add(1)
			st := fixedRelay()
			st.Accepted = accepted.Load()
			return st
		},
		LogDropped: dropped.Load,
	}
	s := startServer(t, Config{}, src)
	c := client(t)
	value := func(f map[string]*dto.MetricFamily, name string) float64 {
		t.Helper()
		m := f[name]
		if m == nil || len(m.Metric) != 1 {
			t.Fatalf("%s: %v", name, m)
		}
		return m.Metric[0].GetCounter().GetValue()
	}
	for i, n := range []uint64{0, 5, 1 << 40} {
		accepted.Store(n)
		dropped.Store(n * 3)
		f := scrape(t, c, s)
		if got := value(f, "relayd_sessions_accepted_total"); got != float64(n) {
			t.Errorf("scrape %d: accepted %v, want %d", i, got, n)
		}
		if got := value(f, "relayd_log_entries_dropped_total"); got != float64(n*3) {
			t.Errorf("scrape %d: dropped %v, want %d", i, got, n*3)
		}
		if got := calls.Load(); got != int64(i+1) {
			t.Errorf("after scrape %d: Relay called %d times, want %d (once per scrape)", i, got, i+1)
		}
	}
	// Sources left nil leave their metrics out.
	f := scrape(t, c, s)
	for _, name := range []string{"relayd_connector_inflight", "relayd_log_entries_written_total", "relayd_connector_latency_seconds"} {
		if f[name] != nil {
			t.Errorf("%s exported without its source", name)
		}
	}
}

func TestMetricsLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewCollector(fixedSources(), "v0"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// 28 families named in TestMetricsExactValues + build info + histogram.
	if n := testutil.CollectAndCount(NewCollector(fixedSources(), "v0")); n < 30 {
		t.Errorf("only %d series", n)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var ready atomic.Bool
	s := startServer(t, Config{}, Sources{Ready: ready.Load})
	c := client(t)
	for i, want := range []bool{false, true, false, true} {
		ready.Store(want)
		code, hdr, body := get(t, c, http.MethodGet, addrURL(s, "/readyz"))
		wantCode, wantBody := http.StatusServiceUnavailable, "not ready\n"
		if want {
			wantCode, wantBody = http.StatusOK, "ready\n"
		}
		if code != wantCode || body != wantBody {
			t.Errorf("step %d: /readyz = %d %q, want %d %q", i, code, body, wantCode, wantBody)
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("/readyz Cache-Control = %q", hdr.Get("Cache-Control"))
		}
		if code, _, body := get(t, c, http.MethodGet, addrURL(s, "/healthz")); code != http.StatusOK || body != "ok\n" {
			t.Errorf("step %d: /healthz = %d %q, want 200 ok", i, code, body)
		}
	}
	// HEAD works like GET, without a body.
	ready.Store(false)
	if code, _, body := get(t, c, http.MethodHead, addrURL(s, "/readyz")); code != http.StatusServiceUnavailable || body != "" {
		t.Errorf("HEAD /readyz = %d %q", code, body)
	}
	if code, _, _ := get(t, c, http.MethodGet, addrURL(s, "/nope")); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
}

func TestNilReadyMeansReady(t *testing.T) {
	s := startServer(t, Config{}, Sources{})
	if code, _, _ := get(t, client(t), http.MethodGet, addrURL(s, "/readyz")); code != http.StatusOK {
		t.Errorf("/readyz = %d, want 200", code)
	}
}

// Methods other than GET and HEAD get 405 on every route and never reach a
// handler, so they cannot read (let alone change) anything.
func TestOtherMethodsRefused(t *testing.T) {
	var calls atomic.Int64
	src := fixedSources()
	src.Relay = func() relay.Stats { calls.Add(1); return fixedRelay() }
	src.Ready = func() bool { calls.Add(1); return true }
	s := startServer(t, Config{Pprof: true}, src)
	c := client(t)
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/", "/debug/pprof/symbol", "/nope"} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			code, hdr, _ := get(t, c, m, addrURL(s, path))
			if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s = %d Allow=%q, want 405 Allow=GET, HEAD", m, path, code, hdr.Get("Allow"))
			}
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("sources called %d times by refused requests", n)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", on), func(t *testing.T) {
			s := startServer(t, Config{Pprof: on}, Sources{})
			c := client(t)
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
				code, _, body := get(t, c, http.MethodGet, addrURL(s, path))
				if !on {
					if code != http.StatusNotFound {
						t.Errorf("%s = %d with pprof off, want 404", path, code)
					}
					continue
				}
				if code != http.StatusOK || body == "" {
					t.Errorf("%s = %d (%d bytes), want 200 with a body", path, code, len(body))
				}
			}
			if on {
				if _, _, body := get(t, c, http.MethodGet, addrURL(s, "/debug/pprof/")); !strings.Contains(body, "goroutine") {
					t.Errorf("/debug/pprof/ index lacks goroutine: %.200s", body)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		listen string
		remote bool
		want   error
	}{
		{"127.0.0.1:9090", false, nil},
		{"127.0.0.1:0", false, nil},
		{"127.1.2.3:9090", false, nil},
		{"[::1]:9090", false, nil},
		{"[::ffff:127.0.0.1]:9090", false, nil},
		{"0.0.0.0:9090", false, ErrRemoteRefused},
		{":9090", false, ErrRemoteRefused},
		{"[::]:9090", false, ErrRemoteRefused},
		{"10.1.2.3:9090", false, ErrRemoteRefused},
		{"[::ffff:10.1.2.3]:9090", false, ErrRemoteRefused},
		{"10.1.2.3:9090", true, nil},
		{":9090", true, nil},
		{"", false, ErrInvalidConfig},
		{"127.0.0.1", false, ErrInvalidConfig},
		{"localhost:9090", false, ErrInvalidConfig},
		{"localhost:9090", true, ErrInvalidConfig},
		{"127.0.0.1:http", false, ErrInvalidConfig},
	} {
		t.Run(fmt.Sprintf("%s,remote=%v", tc.listen, tc.remote), func(t *testing.T) {
			cfg := Config{Listen: tc.listen, AllowRemote: tc.remote}
			err := cfg.Validate()
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), "admin.listen") {
				t.Errorf("error %q does not name admin.listen", err)
			}
			// New refuses the same, and binds nothing either way.
			s, nerr := New(cfg, Sources{})
			if !errors.Is(nerr, tc.want) || (s == nil) != (nerr != nil) {
				t.Errorf("New = %v, %v", s, nerr)
			}
			if s != nil && s.Addr() != nil {
				t.Errorf("New bound %v", s.Addr())
			}
		})
	}
}

func TestBindErrorNamesKey(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	s, err := New(Config{Listen: held.Addr().String()}, Sources{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Start()
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("Start on a held port = %v, want EADDRINUSE naming admin.listen", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed Start: %v", err)
	}
}

func TestStartListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Listen: "127.0.0.1:9090"}, Sources{}) // inherited: Listen is not bound
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StartListener(ln); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr().String() != ln.Addr().String() {
		t.Errorf("Addr = %v, want %v", s.Addr(), ln.Addr())
	}
	if code, _, _ := get(t, client(t), http.MethodGet, addrURL(s, "/healthz")); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second start = %v, want ErrStarted", err)
	}
}

// Shutdown with an idle keep-alive connection open returns promptly, closes
// the listener, is safe twice, and leaves no goroutine behind.
func TestShutdown(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, fixedSources())
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Fatalf("Addr before Start = %v", s.Addr())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	scrape(t, c, s) // leaves an idle keep-alive connection on the server
	addr := s.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Errorf("%s still accepts after Shutdown", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Shutdown: %v, want ECONNREFUSED", err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("Start after Shutdown = %v, want ErrStarted", err)
	}
	tr.CloseIdleConnections()
	goleak.VerifyNone(t)
}

// A scrape stuck in a source cannot hold Shutdown past its deadline.
func TestShutdownForcedByDeadline(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s, err := New(Config{Listen: "127.0.0.1:0"}, Sources{Ready: func() bool {
		close(entered)
		<-release
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	got := make(chan error, 1)
	go func() {
		resp, err := c.Get(addrURL(s, "/readyz"))
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a stuck request = %v, want DeadlineExceeded", err)
	}
	close(release)
	if err := <-got; err == nil {
		t.Error("the stuck request got a response after a forced Shutdown")
	}
	tr.CloseIdleConnections()
	goleak.VerifyNone(t)
}

func TestShutdownBeforeStart(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, Sources{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("Start after Shutdown = %v, want ErrStarted", err)
	}
	if s.Addr() != nil {
		t.Errorf("bound %v", s.Addr())
	}
}
