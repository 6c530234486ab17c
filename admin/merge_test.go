package admin

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

func families(t *testing.T, text string) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range f {
		fam.Help = proto.String("h")
	}
	return f
}

// withHelp adds the "# HELP name h" line families gives every family.
func withHelp(text string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(text, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			b.WriteString("# HELP " + strings.Fields(name)[0] + " h\n")
		}
		b.WriteString(line)
	}
	return b.String()
}

const workerA = `# TYPE relayd_sessions_accepted_total counter
relayd_sessions_accepted_total 10
# TYPE relayd_sessions_active gauge
relayd_sessions_active 3
# TYPE relayd_upstream_up gauge
relayd_upstream_up{listener="l0",upstream="127.0.0.1:1"} 1
# TYPE relayd_loop_sessions_active gauge
relayd_loop_sessions_active{loop="0"} 3
# TYPE process_open_fds gauge
process_open_fds 20
# TYPE relayd_connector_latency_seconds histogram
relayd_connector_latency_seconds_bucket{le="0.001"} 4
relayd_connector_latency_seconds_bucket{le="+Inf"} 10
relayd_connector_latency_seconds_sum 0.5
relayd_connector_latency_seconds_count 10
`

const workerB = `# TYPE relayd_sessions_accepted_total counter
relayd_sessions_accepted_total 5
# TYPE relayd_sessions_active gauge
relayd_sessions_active 2
# TYPE relayd_upstream_up gauge
relayd_upstream_up{listener="l0",upstream="127.0.0.1:1"} 0
# TYPE relayd_loop_sessions_active gauge
relayd_loop_sessions_active{loop="0"} 2
# TYPE process_open_fds gauge
process_open_fds 30
# TYPE relayd_connector_latency_seconds histogram
relayd_connector_latency_seconds_bucket{le="0.001"} 1
relayd_connector_latency_seconds_bucket{le="+Inf"} 5
relayd_connector_latency_seconds_sum 0.25
relayd_connector_latency_seconds_count 5
`

// Counters and histograms add up, gauges that count add up, upstream_up is
// the minimum, per-process series get a worker label; a worker that exits
// keeps its counters in the totals but not its gauges.
func TestMergerSums(t *testing.T) {
	var mu sync.Mutex
	workers := map[int]Families{0: families(t, workerA), 1: families(t, workerB)}
	m := NewMerger(func(context.Context, bool) map[int]Families {
		mu.Lock()
		defer mu.Unlock()
		return workers
	})
	m.own = prometheus.NewRegistry()
	want := `# HELP relayd_sessions_accepted_total 
# TYPE relayd_sessions_accepted_total counter
relayd_sessions_accepted_total 15
# TYPE relayd_sessions_active gauge
relayd_sessions_active 5
# TYPE relayd_upstream_up gauge
relayd_upstream_up{listener="l0",upstream="127.0.0.1:1"} 0
# TYPE relayd_loop_sessions_active gauge
relayd_loop_sessions_active{loop="0",worker="0"} 3
relayd_loop_sessions_active{loop="0",worker="1"} 2
# TYPE process_open_fds gauge
process_open_fds{worker="0"} 20
process_open_fds{worker="1"} 30
# TYPE relayd_connector_latency_seconds histogram
relayd_connector_latency_seconds_bucket{le="0.001"} 5
relayd_connector_latency_seconds_bucket{le="+Inf"} 15
relayd_connector_latency_seconds_sum 0.75
relayd_connector_latency_seconds_count 15
`
	if err := testutil.GatherAndCompare(m, strings.NewReader(withHelp(want))); err != nil {
		t.Fatal(err)
	}
	// Worker 1 exits; its replacement starts from zero.
	m.Retire(1)
	mu.Lock()
	workers = map[int]Families{0: families(t, workerA), 1: families(t, `# TYPE relayd_sessions_accepted_total counter
relayd_sessions_accepted_total 1
# TYPE relayd_sessions_active gauge
relayd_sessions_active 1
`)}
	mu.Unlock()
	want = `# HELP relayd_sessions_accepted_total 
# TYPE relayd_sessions_accepted_total counter
relayd_sessions_accepted_total 16
# TYPE relayd_sessions_active gauge
relayd_sessions_active 4
# TYPE relayd_connector_latency_seconds histogram
relayd_connector_latency_seconds_bucket{le="0.001"} 5
relayd_connector_latency_seconds_bucket{le="+Inf"} 15
relayd_connector_latency_seconds_sum 0.75
relayd_connector_latency_seconds_count 15
`
	if err := testutil.GatherAndCompare(m, strings.NewReader(withHelp(want)), "relayd_sessions_accepted_total", "relayd_sessions_active", "relayd_connector_latency_seconds"); err != nil {
		t.Fatal(err)
	}
}
