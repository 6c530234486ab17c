package admin

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/edge/route"
	"github.com/relayd/relayd/relay"
)

// Sources are the snapshot functions the collector calls at scrape time.
// Each may be nil: its metrics are then left out (Ready nil means always
// ready). They are called from the HTTP handler goroutine, possibly by two
// scrapes at once, so they must be safe for concurrent use — relay.Server.Stats,
// connector.Pool.Stats and the logging.Logger counters are.
type Sources struct {
	Relay      func() relay.Stats
	Connector  func() connector.Stats
	Upstreams  func() []connector.UpstreamStats // connector.Pool.UpstreamStats
	LogDropped func() uint64                    // logging.Logger.Dropped
	LogWritten func() uint64                    // logging.Logger.Written
	LogSampled func() uint64                    // logging.Logger.Sampled
	LogWErrs   func() uint64                    // logging.Logger.WriteErrors
	// Edge returns per-listener refusals of client-chosen destinations (by
	// policy rule) and of sources (ACL, per-source limits, by rule).
	Edge func() map[string]relay.EdgeStats
	// Ready is true while every listener is bound and the server is not
	// draining. /readyz answers 503 whenever it returns false.
	Ready func() bool
}

// Label values for the direction label.
const (
	dirUp   = "up"   // client -> upstream
	dirDown = "down" // upstream -> client
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("relayd_"+name, help, labels, nil)
}

// collector turns the stats snapshots into const metrics on every scrape.
// It holds no counters of its own: the relay loops and connector workers
// keep their atomics, and nothing on the data path calls into Prometheus.
type collector struct {
	src     Sources
	version string

	buildInfo *prometheus.Desc

	lnInfo, lnActive, lnAccepted, lnClosed, lnBytes *prometheus.Desc

	accepted, active, closed, acceptErrs, acceptBackoff *prometheus.Desc
	bytes, pauses, resumes, bufsHeld                    *prometheus.Desc
	spliced                                             *prometheus.Desc
	loopActive, loopBufs                                *prometheus.Desc

	cInflight, cHigh, cQueued, cSubmitted, cRejected *prometheus.Desc
	cDownRejected, cDownFailed, cLate                *prometheus.Desc
	uUp, uInflight, uQueued, uLimit, uConnected      *prometheus.Desc
	uRate                                            *prometheus.Desc
	uFailures, uQueueTO, uLate, uRejected, uTrans    *prometheus.Desc
	uCuts, uChecks, uCheckFails, uLatency            *prometheus.Desc
	edgeDenied, edgeRejected                         *prometheus.Desc
	routeSessions, routeUnmatched                    *prometheus.Desc
	loopQueue                                        *prometheus.Desc
	cAttempts, cConnected, cFailed, cCanceled        *prometheus.Desc
	cFailures, cLatency                              *prometheus.Desc

	logDropped, logWritten *prometheus.Desc
	logSampled, logWErrs   *prometheus.Desc
}

// NewCollector returns the prometheus.Collector behind /metrics, for
// callers that want it in a registry of their own.
func NewCollector(src Sources, version string) prometheus.Collector {
	if version == "" {
		version = "unknown"
	}
	return &collector{
		src:       src,
		version:   version,
		buildInfo: desc("build_info", "Always 1; the labels say which relayd build runs.", "version", "goversion"),

		lnInfo:     desc("listener_info", "Always 1 per listener (including removed ones); addr is the bound address.", "listener", "addr"),
		lnActive:   desc("listener_sessions_active", "Sessions open right now, per listener.", "listener"),
		lnAccepted: desc("listener_sessions_accepted_total", "Client connections accepted, per listener (including those rejected at once).", "listener"),
		lnClosed:   desc("listener_sessions_closed_total", "Sessions ended, per listener and close reason.", "listener", "reason"),
		lnBytes:    desc("listener_session_bytes_total", "Bytes relayed by sessions that have ended, per listener and direction (up: client to upstream). Live totals: relayd_bytes_total.", "listener", "direction"),

		accepted:      desc("sessions_accepted_total", "Client connections accepted, all listeners."),
		active:        desc("sessions_active", "Sessions open right now, all listeners."),
		closed:        desc("sessions_closed_total", "Sessions ended, all listeners, by close reason.", "reason"),
		acceptErrs:    desc("accept_errors_total", "accept() failures by errno kind.", "kind"),
		acceptBackoff: desc("accept_backoff_total", "Accept back-off episodes (EMFILE, ENFILE, ENOBUFS)."),
		bytes:         desc("bytes_total", "Bytes relayed so far including live sessions, by direction (up: client to upstream).", "direction"),
		pauses:        desc("backpressure_pauses_total", "Backpressure episodes begun: a direction stopped being read because its destination refused bytes."),
		spliced:       desc("splice_directions_total", "Session directions that switched to splice(2) (bulk: relay.splice auto)."),
		resumes:       desc("backpressure_resumes_total", "Backpressure episodes ended by draining; pauses minus resumes = paused now plus closed while paused."),
		bufsHeld:      desc("buffers_held", "Relay buffers held by sessions right now, all loops."),
		loopActive:    desc("loop_sessions_active", "Sessions owned by each relay loop right now.", "loop"),
		loopBufs:      desc("loop_buffers_held", "Relay buffers held by each loop's sessions right now.", "loop"),

		cInflight:     desc("connector_inflight", "Upstream connects in progress, per connector worker.", "worker"),
		cHigh:         desc("connector_inflight_high_water", "Most upstream connects ever in progress at once, per connector worker.", "worker"),
		cQueued:       desc("connector_queued", "Connect requests waiting for a slot, all upstreams."),
		cDownRejected: desc("connector_down_rejected_total", "Connect requests refused at once because every candidate upstream was down."),
		cDownFailed:   desc("connector_down_failed_total", "Connect requests failed because their remaining candidates went down while they waited."),
		cLate:         desc("connector_late_total", "Connect attempts unanswered past the late threshold (a lost SYN); with adaptive pacing each is re-sent."),
		cSubmitted:    desc("connector_requests_total", "Connect requests accepted by the connector."),
		cRejected:     desc("connector_queue_rejected_total", "Connect requests refused because the queue was full (the client is rejected)."),
		cAttempts:     desc("connector_attempts_total", "Connect attempts started (a failover counts each try)."),
		cConnected:    desc("connector_connected_total", "Requests that got a connected upstream socket."),
		cFailed:       desc("connector_failed_total", "Requests whose every try failed."),
		cCanceled:     desc("connector_canceled_total", "Requests canceled because the client went away."),
		cFailures:     desc("connector_failures_total", "Failed connect attempts by class.", "class"),
		cLatency:      desc("connector_latency_seconds", "Time from submit to connected upstream, for connected requests (log2 buckets from 1µs)."),

		uUp:         desc("upstream_up", "1 while the upstream is healthy, 0 while it is marked down.", "listener", "upstream"),
		uInflight:   desc("upstream_inflight", "Connects in flight to the upstream.", "listener", "upstream"),
		uQueued:     desc("upstream_queued", "Connect requests waiting for the upstream's limit.", "listener", "upstream"),
		uLimit:      desc("upstream_limit", "Connects the upstream may have in flight now: the adaptive (or fixed) limit; 1 while down (the trial), 0 while an active check owns its recovery.", "listener", "upstream"),
		uRate:       desc("upstream_rate_limit", "Connect starts per second the upstream may take now (adaptive pacing after a lost SYN); 0 = not paced.", "listener", "upstream"),
		uConnected:  desc("upstream_connected_total", "Connects to the upstream that succeeded.", "listener", "upstream"),
		uFailures:   desc("upstream_failures_total", "Failed connect attempts to the upstream, by class.", "listener", "upstream", "class"),
		uQueueTO:    desc("upstream_queue_timeouts_total", "Requests whose connect timeout ran out while they waited for the upstream's limit.", "listener", "upstream"),
		uLate:       desc("upstream_late_total", "Attempts to the upstream unanswered past the late threshold (lost SYNs).", "listener", "upstream"),
		uRejected:   desc("upstream_queue_rejected_total", "Clients refused because the upstream's queue was full.", "listener", "upstream"),
		uTrans:      desc("upstream_transitions_total", "Health state changes of the upstream (up to down and back).", "listener", "upstream"),
		uCuts:       desc("upstream_limit_cuts_total", "Times the adaptive limit was cut on a congestion signal.", "listener", "upstream"),
		uChecks:     desc("upstream_checks_total", "Active health checks run.", "listener", "upstream"),
		uCheckFails: desc("upstream_check_failures_total", "Active health checks failed.", "listener", "upstream"),
		uLatency:    desc("upstream_connect_latency_seconds", "Connect latency of the upstream's successful attempts (log2 buckets from 1µs).", "listener", "upstream"),

		loopQueue:      desc("loop_queue_depth", "Tasks waiting in each relay loop's queue (connect results, hand-overs, name answers).", "loop"),
		edgeDenied:     desc("policy_denied_total", "Client-chosen destinations refused, by listener and policy rule.", "listener", "rule"),
		edgeRejected:   desc("source_rejected_total", "Clients refused by source ACL or per-source limits, by listener and rule.", "listener", "rule"),
		routeSessions:  desc("route_sessions_total", "Sessions a listener's routes sent to a route's group, by listener and route (the first bytes matched it).", "listener", "route"),
		routeUnmatched: desc("route_unmatched_total", "Sessions of a listener with routes that matched none and went to its default upstreams.", "listener"),

		logDropped: desc("log_entries_dropped_total", "Log entries dropped because the ring was full or the write failed."),
		logWritten: desc("log_entries_written_total", "Log entries written."),
		logSampled: desc("log_entries_sampled_total", "Ordinary log lines dropped by the sampler (the same message repeated; access lines are never sampled)."),
		logWErrs:   desc("log_write_errors_total", "Writes to the log output that failed (disk full, a closed pipe…)."),
	}
}

func (c *collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{
		c.buildInfo,
		c.lnInfo, c.lnActive, c.lnAccepted, c.lnClosed, c.lnBytes,
		c.accepted, c.active, c.closed, c.acceptErrs, c.acceptBackoff,
		c.bytes, c.pauses, c.resumes, c.bufsHeld, c.loopActive, c.loopBufs, c.spliced,
		c.cInflight, c.cHigh, c.cQueued, c.cSubmitted, c.cRejected, c.cDownRejected, c.cDownFailed, c.cLate,
		c.uUp, c.uInflight, c.uQueued, c.uLimit, c.uRate, c.uConnected, c.uFailures, c.uQueueTO, c.uLate, c.uRejected,
		c.uTrans, c.uCuts, c.uChecks, c.uCheckFails, c.uLatency,
		c.cAttempts, c.cConnected, c.cFailed, c.cCanceled, c.cFailures, c.cLatency,
		c.logDropped, c.logWritten, c.logSampled, c.logWErrs, c.edgeDenied, c.edgeRejected, c.routeSessions, c.routeUnmatched, c.loopQueue,
	}
}

// Describe sends every descriptor, so the registry can check Collect
// against them (a checked collector).
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect takes one snapshot per source and emits it.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version())
	if c.src.Relay != nil {
		c.collectRelay(ch, c.src.Relay())
	}
	if c.src.Connector != nil {
		c.collectConnector(ch, c.src.Connector())
	}
	if c.src.Upstreams != nil {
		c.collectUpstreams(ch, c.src.Upstreams())
	}
	if c.src.Edge != nil {
		for name, es := range c.src.Edge() {
			for rule, n := range es.PolicyDenied {
				ch <- prometheus.MustNewConstMetric(c.edgeDenied, prometheus.CounterValue, float64(n), name, rule)
			}
			for rule, n := range es.SourceRejected {
				ch <- prometheus.MustNewConstMetric(c.edgeRejected, prometheus.CounterValue, float64(n), name, rule)
			}
			for r, n := range es.Routed {
				if r == route.Default {
					ch <- prometheus.MustNewConstMetric(c.routeUnmatched, prometheus.CounterValue, float64(n), name)
				} else {
					ch <- prometheus.MustNewConstMetric(c.routeSessions, prometheus.CounterValue, float64(n), name, r)
				}
			}
		}
	}
	if c.src.LogDropped != nil {
		ch <- prometheus.MustNewConstMetric(c.logDropped, prometheus.CounterValue, float64(c.src.LogDropped()))
	}
	if c.src.LogWritten != nil {
		ch <- prometheus.MustNewConstMetric(c.logWritten, prometheus.CounterValue, float64(c.src.LogWritten()))
	}
	if c.src.LogSampled != nil {
		ch <- prometheus.MustNewConstMetric(c.logSampled, prometheus.CounterValue, float64(c.src.LogSampled()))
	}
	if c.src.LogWErrs != nil {
		ch <- prometheus.MustNewConstMetric(c.logWErrs, prometheus.CounterValue, float64(c.src.LogWErrs()))
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, lv ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v int64, lv ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), lv...)
}

func (c *collector) collectRelay(ch chan<- prometheus.Metric, s relay.Stats) {
	reasons := relay.Reasons()
	for name, ls := range s.Listeners {
		gauge(ch, c.lnInfo, 1, name, ls.Addr.String())
		gauge(ch, c.lnActive, ls.Active, name)
		counter(ch, c.lnAccepted, ls.Accepted, name)
		// Every reason, zeros included, so rate() works from the first
		// close and dashboards see the full label set.
		for _, r := range reasons {
			counter(ch, c.lnClosed, ls.Closed[r.String()], name, r.String())
		}
		counter(ch, c.lnBytes, ls.BytesUp, name, dirUp)
		counter(ch, c.lnBytes, ls.BytesDown, name, dirDown)
	}
	counter(ch, c.accepted, s.Accepted)
	gauge(ch, c.active, s.Active)
	for _, r := range reasons {
		counter(ch, c.closed, s.Closed[r.String()], r.String())
	}
	for kind, n := range s.AcceptErrors {
		counter(ch, c.acceptErrs, n, kind)
	}
	counter(ch, c.acceptBackoff, s.AcceptBackoff)
	counter(ch, c.bytes, s.BytesUp, dirUp)
	counter(ch, c.bytes, s.BytesDown, dirDown)
	counter(ch, c.pauses, s.Pauses)
	counter(ch, c.spliced, s.Spliced)
	counter(ch, c.resumes, s.Resumes)
	gauge(ch, c.bufsHeld, s.BufsHeld)
	for i, l := range s.Loops {
		idx := strconv.Itoa(i)
		gauge(ch, c.loopActive, l.Active, idx)
		gauge(ch, c.loopBufs, l.BufsHeld, idx)
		gauge(ch, c.loopQueue, l.Queue, idx)
	}
}

func (c *collector) collectConnector(ch chan<- prometheus.Metric, s connector.Stats) {
	for i, n := range s.Inflight {
		gauge(ch, c.cInflight, int64(n), strconv.Itoa(i))
	}
	for i, n := range s.InflightHighWater {
		gauge(ch, c.cHigh, int64(n), strconv.Itoa(i))
	}
	gauge(ch, c.cQueued, int64(s.Queued))
	counter(ch, c.cSubmitted, s.Submitted)
	counter(ch, c.cRejected, s.QueueRejected)
	counter(ch, c.cDownRejected, s.DownRejected)
	counter(ch, c.cDownFailed, s.DownFailed)
	counter(ch, c.cLate, s.Late)
	counter(ch, c.cAttempts, s.Attempts)
	counter(ch, c.cConnected, s.Connected)
	counter(ch, c.cFailed, s.Failed)
	counter(ch, c.cCanceled, s.Canceled)
	for i, n := range s.Failures {
		counter(ch, c.cFailures, n, connector.Class(i).String())
	}
	count, buckets := latencyHistogram(s.LatencyBuckets[:])
	ch <- prometheus.MustNewConstHistogram(c.cLatency, count, s.LatencySum.Seconds(), buckets)
}

func (c *collector) collectUpstreams(ch chan<- prometheus.Metric, ups []connector.UpstreamStats) {
	for i := range ups {
		u := &ups[i]
		l := []string{u.Listener, u.Addr.String()}
		up := int64(0)
		if u.Up {
			up = 1
		}
		gauge(ch, c.uUp, up, l...)
		gauge(ch, c.uInflight, int64(u.Inflight), l...)
		gauge(ch, c.uQueued, int64(u.Queued), l...)
		gauge(ch, c.uLimit, int64(u.Limit), l...)
		ch <- prometheus.MustNewConstMetric(c.uRate, prometheus.GaugeValue, u.Rate, l...)
		counter(ch, c.uConnected, u.Connected, l...)
		for k, n := range u.Failures {
			counter(ch, c.uFailures, n, u.Listener, l[1], connector.Class(k).String())
		}
		counter(ch, c.uQueueTO, u.QueueTO, l...)
		counter(ch, c.uLate, u.Late, l...)
		counter(ch, c.uRejected, u.Rejected, l...)
		counter(ch, c.uTrans, u.Transitions, l...)
		counter(ch, c.uCuts, u.Cuts, l...)
		counter(ch, c.uChecks, u.Checks, l...)
		counter(ch, c.uCheckFails, u.CheckFails, l...)
		count, buckets := latencyHistogram(u.LatencyBuckets[:])
		ch <- prometheus.MustNewConstHistogram(c.uLatency, count, u.LatencySum.Seconds(), buckets, l...)
	}
}

// latencyHistogram converts the connector's log2 buckets (bucket i counts
// latencies up to 2^i µs, the last one also everything slower) into
// Prometheus's cumulative form. The last bucket is open-ended, so it has no
// finite bound and lands in +Inf only. The count is the sum of the buckets,
// not LatencyCount: the snapshot is not atomic, and the exposition must
// keep every bucket ≤ count.
func latencyHistogram(lb []uint64) (count uint64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, connector.NumLatencyBuckets-1)
	for i, n := range lb {
		count += n
		if i < connector.NumLatencyBuckets-1 {
			buckets[connector.LatencyBucketBound(i).Seconds()] = count
		}
	}
	return count, buckets
}
