package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// WorkerInfo is one worker slot of a multi-process master.
type WorkerInfo struct {
	Index    int
	PID      int // 0 while none runs
	Ready    bool
	Restarts uint64
}

// workersCollector exports the master's view of its workers.
type workersCollector struct {
	status                   func() []WorkerInfo
	workers, ready, restarts *prometheus.Desc
}

// NewWorkersCollector exports relayd_workers{state="desired"|"up"},
// relayd_worker_ready{worker} and relayd_worker_restarts_total{worker} from
// status, for a master's registry (Config.Collectors).
func NewWorkersCollector(status func() []WorkerInfo) prometheus.Collector {
	return &workersCollector{
		status:   status,
		workers:  desc("workers", "Worker processes: desired (the processes setting) and up (running and ready).", "state"),
		ready:    desc("worker_ready", "1 while the worker in this slot runs and is ready.", "worker"),
		restarts: desc("worker_restarts_total", "Times the worker in this slot was started again after it exited.", "worker"),
	}
}

func (c *workersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.workers
	ch <- c.ready
	ch <- c.restarts
}

func (c *workersCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	up := 0
	for _, w := range st {
		r := 0.0
		if w.Ready {
			up++
			r = 1
		}
		idx := strconv.Itoa(w.Index)
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, r, idx)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(w.Restarts), idx)
	}
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(len(st)), "desired")
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(up), "up")
}
