package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// metricRef finds metric names in PromQL: relayd's own, and the process
// and Go runtime collectors' it exports beside them.
var metricRef = regexp.MustCompile(`\b(?:relayd|process|go)_[a-z0-9_]+\b`)

// exportedNames scrapes a multi-process relayd (the master exports every
// family a single process does, merged, plus the worker gauges) after one
// relayed session, and returns the metric family names, histograms' series
// (_bucket, _sum, _count) included.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	up := echoServer(t)
	// With a route, so that the route families exist: one session matches
	// it (by Host), one does not.
	yaml := strings.Replace(workersYAML(2, up.Addr().String(), ""), "    upstreams: ["+up.Addr().String()+"]\n",
		"    upstreams: ["+up.Addr().String()+"]\n    routes:\n      - name: web\n        host: [x.example]\n        upstreams: ["+up.Addr().String()+"]\n", 1)
	c := startRelayd(t, yaml, "")
	adm := adminAddr(t, c)
	s := heldSession(t, c.addr, "metrics")
	s.Close()
	s = heldSession(t, c.addr, "GET / HTTP/1.1\r\nHost: x.example\r\n\r\n")
	s.Close()
	waitFor(t, 10*time.Second, "the session counted", func() bool { return scrape(t, adm, "relayd_sessions_closed_total") >= 1 })
	// The master reads its workers' counters every 10 s; the upstream
	// series exist as soon as the workers configured it.
	resp, err := http.Get("http://" + adm + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			parts := strings.Fields(f)
			names[parts[0]] = true
			if parts[1] == "histogram" {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					names[parts[0]+suf] = true
				}
			}
		}
	}
	if !names["relayd_sessions_active"] || !names["relayd_workers"] || !names["process_open_fds"] {
		t.Fatalf("the scrape lacks basic families: %d names", len(names))
	}
	return names
}

// Every metric the Grafana dashboard and the Prometheus rules query is one
// relayd exports: renaming a metric without the dashboard fails here.
func TestDeployMetricNames(t *testing.T) {
	exported := exportedNames(t)
	used := map[string][]string{} // name -> where

	b, err := os.ReadFile("../../deploy/grafana/relayd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if len(dash.Panels) < 10 {
		t.Fatalf("dashboard has %d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Fatalf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricRef.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "dashboard panel "+p.Title)
			}
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok {
			for _, m := range metricRef.FindAllString(q, -1) {
				used[m] = append(used[m], "dashboard variable")
			}
		}
	}

	rb, err := os.ReadFile("../../deploy/prometheus/relayd-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rb, &rules); err != nil {
		t.Fatalf("rules: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, m := range metricRef.FindAllString(r.Expr, -1) {
				used[m] = append(used[m], "alert "+r.Alert)
			}
		}
	}
	if n < 5 {
		t.Fatalf("%d alerting rules, the README lists 5", n)
	}
	var missing []string
	for m, where := range used {
		if !exported[m] {
			missing = append(missing, m+" ("+strings.Join(where, ", ")+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("queried but not exported:\n%s", strings.Join(missing, "\n"))
	}
	// promtool, where installed (CI installs Debian's prometheus), checks
	// the rules' syntax and PromQL.
	if _, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command("promtool", "check", "rules", "../../deploy/prometheus/relayd-rules.yml").CombinedOutput(); err != nil {
			t.Fatalf("promtool check rules: %v\n%s", err, out)
		}
	} else if os.Getenv("RELAYD_REQUIRE_PROMTOOL") != "" {
		t.Fatal("promtool is not installed and RELAYD_REQUIRE_PROMTOOL is set")
	}
}
