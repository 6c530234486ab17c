package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/relay"
)

func TestEdgeMetrics(t *testing.T) {
	s := startServer(t, Config{}, Sources{Edge: func() map[string]relay.EdgeStats {
		return map[string]relay.EdgeStats{
			"socks": {PolicyDenied: map[string]uint64{"loopback": 3, "metadata": 1}, SourceRejected: map[string]uint64{"acl-deny": 2}},
		}
	}})
	want := `# HELP relayd_policy_denied_total Client-chosen destinations refused, by listener and policy rule.
# TYPE relayd_policy_denied_total counter
relayd_policy_denied_total{listener="socks",rule="loopback"} 3
relayd_policy_denied_total{listener="socks",rule="metadata"} 1
# HELP relayd_source_rejected_total Clients refused by source ACL or per-source limits, by listener and rule.
# TYPE relayd_source_rejected_total counter
relayd_source_rejected_total{listener="socks",rule="acl-deny"} 2
`
	if err := testutil.ScrapeAndCompare(addrURL(s, "/metrics"), strings.NewReader(want), "relayd_policy_denied_total", "relayd_source_rejected_total"); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
}
