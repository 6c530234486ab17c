package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The small version of loadtest/scale.sh that CI runs: 6,000 idle sessions
// (3 workers × ~2,000) from `relayd load --procs 2` through a 3-worker
// relayd into `relayd sink --procs 2`, each proven by an echo; the load
// tool, the master's /metrics and the sinks agree exactly, and the
// workers' descriptors are back to their baseline afterwards.
func TestScaleSmall(t *testing.T) {
	const sessions = 6000
	sink := exec.Command(relaydBin, "sink", "--listen", "127.0.0.1:0", "--procs", "2")
	out, err := sink.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sink.ProcessState == nil {
			_ = sink.Process.Kill()
			_ = sink.Wait()
		}
	})
	lines := bufio.NewScanner(out)
	sinkAddr := ""
	if lines.Scan() {
		if f := strings.Fields(lines.Text()); len(f) > 3 && f[0] == "sink" {
			sinkAddr = f[3]
		}
	}
	if sinkAddr == "" {
		t.Fatalf("no sink address: %q", lines.Text())
	}
	c := startRelayd(t, strings.Replace(workersYAML(3, sinkAddr, ""), "    upstreams:", "    source: 127.0.1.1-127.0.1.2\n    upstreams:", 1), "")
	adm := adminAddr(t, c)
	fdsBefore := scrape(t, adm, "process_open_fds{worker=")
	pids := []string{strconv.Itoa(c.cmd.Process.Pid)}
	for _, p := range workerPIDs(c) {
		pids = append(pids, strconv.Itoa(p))
	}
	load := exec.Command(relaydBin, "load", "--target", c.addr, "--mode", "idle", "--sessions", strconv.Itoa(sessions),
		"--procs", "2", "--source-ips", "127.0.0.2-127.0.0.31", "--duration", "1s", "--json", "--progress", "off",
		"--pid", strings.Join(pids, ","))
	b, err := load.Output()
	if err != nil {
		t.Fatalf("load: %v\n%s", err, b)
	}
	var res struct {
		S                   uint64  `json:"sessions"`
		E                   uint64  `json:"errors_total"`
		Procs               int     `json:"procs"`
		IdleOpen            float64 `json:"idle_open_s"`
		TargetRSSPerSession float64 `json:"target_rss_per_session_bytes"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("load output: %v\n%s", err, b)
	}
	if res.S != sessions || res.E != 0 || res.Procs != 2 {
		t.Fatalf("load: %d sessions, %d errors, %d procs; want %d, 0, 2", res.S, res.E, res.Procs, sessions)
	}
	waitFor(t, 20*time.Second, "every session closed", func() bool { return scrape(t, adm, "relayd_sessions_active") == 0 })
	if got := scrape(t, adm, "relayd_sessions_accepted_total"); got != sessions {
		t.Fatalf("master: %v sessions accepted, the load tool opened %d", got, sessions)
	}
	if got := scrape(t, adm, "relayd_sessions_closed_total"); got != sessions {
		t.Fatalf("master: %v sessions closed, want %d", got, sessions)
	}
	waitFor(t, 10*time.Second, "the workers' descriptors back to baseline", func() bool {
		return scrape(t, adm, "process_open_fds{worker=") == fdsBefore
	})
	_ = sink.Process.Signal(syscall.SIGINT)
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	_ = sink.Wait()
	if !strings.Contains(rest.String(), fmt.Sprintf("accepted %d closed %d", sessions, sessions)) {
		t.Fatalf("sinks: %q, want accepted and closed %d", rest.String(), sessions)
	}
	t.Logf("%d sessions opened in %.2fs through 3 workers; relayd RSS %.0f B/session", sessions, res.IdleOpen, res.TargetRSSPerSession)
}
