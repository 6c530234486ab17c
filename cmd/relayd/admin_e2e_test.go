package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/testnet"
	"github.com/relayd/relayd/loadtest"
)

func adminYAML(upstream string) string {
	return fmt.Sprintf(`listeners:
  - name: e2e
    listen: 127.0.0.1:0
    upstreams: [%s]
relay:
  loops: 2
log:
  access: false
admin:
  listen: 127.0.0.1:0
shutdown:
  timeout: 20s
`, upstream)
}

// adminAddr reads the admin endpoint's bound address from relayd's log.
func adminAddr(t *testing.T, c *child) string {
	t.Helper()
	var addr string
	waitFor(t, 10*time.Second, "admin endpoint log line", func() bool {
		for _, line := range strings.Split(c.stderr.String(), "\n") {
			if strings.Contains(line, "admin endpoint") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil {
					addr, _ = m["listen"].(string)
					return addr != ""
				}
			}
		}
		return false
	})
	return addr
}

// scrape returns the value of every sample of /metrics whose name and
// labels start with prefix, summed.
func scrape(t *testing.T, admin, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("bad sample %q", line)
			}
			sum += v
			found = true
		}
	}
	if !found {
		t.Fatalf("no metric %s", prefix)
	}
	return sum
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Issue 5 acceptances 1 and 4: /metrics agrees with the load tool after a
// run (sessions and bytes), and /readyz turns not-ready at once on SIGTERM
// while a running session still drains.
func TestMetricsMatchLoadAndReadyz(t *testing.T) {
	up := echoServer(t)
	c := startRelayd(t, adminYAML(up.Addr().String()), "")
	adm := adminAddr(t, c)
	if code := status(t, "http://"+adm+"/readyz"); code != 200 {
		t.Fatalf("readyz %d before drain", code)
	}
	res, err := loadtest.Run(context.Background(), loadtest.LoadConfig{
		Target: c.addr, Mode: "rr", Size: 64, Concurrency: 20, Sessions: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sessions != 2000 || res.ErrorsTotal != 0 {
		t.Fatalf("load: %d sessions, %d errors %v", res.Sessions, res.ErrorsTotal, res.Errors)
	}
	waitFor(t, 10*time.Second, "sessions to close", func() bool {
		return scrape(t, adm, `relayd_sessions_active`) == 0
	})
	closed := scrape(t, adm, `relayd_listener_sessions_closed_total{listener="e2e"`)
	accepted := scrape(t, adm, `relayd_listener_sessions_accepted_total{listener="e2e"}`)
	up64 := scrape(t, adm, `relayd_bytes_total{direction="up"}`)
	down64 := scrape(t, adm, `relayd_bytes_total{direction="down"}`)
	if closed != float64(res.Sessions) || accepted != float64(res.Sessions) {
		t.Fatalf("metrics: %v closed, %v accepted; load tool: %d sessions", closed, accepted, res.Sessions)
	}
	if up64 != float64(res.BytesSent) || down64 != float64(res.BytesReceived) {
		t.Fatalf("metrics bytes up %v down %v; load tool sent %d received %d", up64, down64, res.BytesSent, res.BytesReceived)
	}
	if v := scrape(t, adm, `relayd_connector_connected_total`); v != float64(res.Sessions) {
		t.Fatalf("connector connected %v, want %d", v, res.Sessions)
	}

	// A session held open across SIGTERM: readyz 503 at once, session served.
	s := heldSession(t, c.addr, "held")
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "readyz 503", func() bool { return status(t, "http://"+adm+"/readyz") == 503 })
	if code := status(t, "http://"+adm+"/healthz"); code != 200 {
		t.Fatalf("healthz %d while draining", code)
	}
	if err := roundTrip(s, "still"); err != nil {
		t.Fatalf("held session during drain: %v", err)
	}
	s.Close()
	if code, _ := c.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	t.Logf("load: %d sessions, %d B up, %d B down; /metrics agreed", res.Sessions, res.BytesSent, res.BytesReceived)
}

// fd exhaustion: under an open-file limit of 256, relayd derives its session
// cap from the limit and refuses clients over it at once (rejected_limit),
// rather than accepting them and failing their upstream connect for want of
// an fd. 600 clients hold a session each; every one is either served (its
// echo comes back) or refused, none closed as connect_failed, and the served
// count is the derived cap exactly.
func TestFDLimitDerivesSessionCap(t *testing.T) {
	up := echoServer(t)
	c := startRelayd(t, adminYAML(up.Addr().String()), "ulimit -n 256;")
	adm := adminAddr(t, c)
	var capLogged float64
	for _, line := range strings.Split(c.stderr.String(), "\n") {
		if strings.Contains(line, "relayd ready") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				capLogged, _ = m["max_sessions"].(float64)
			}
		}
	}
	if capLogged <= 0 || capLogged > 128 {
		t.Fatalf("relayd ready logged max_sessions %v for an open-file limit of 256", capLogged)
	}
	const clients = 600
	var served, refused int
	for range clients {
		s, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			refused++ // reset before the dial returned: refused at once
			continue
		}
		defer s.Close()
		if err := roundTrip(s, "x"); err != nil {
			refused++
			continue
		}
		served++
	}
	if served != int(capLogged) || served+refused != clients {
		t.Fatalf("%d served, %d refused of %d; the cap is %v", served, refused, clients, capLogged)
	}
	if n := scrape(t, adm, `relayd_sessions_closed_total{reason="connect_failed"}`); n != 0 {
		t.Fatalf("%v sessions closed as connect_failed: accepted without an fd for the upstream", n)
	}
	if n := scrape(t, adm, `relayd_sessions_closed_total{reason="rejected_limit"}`); int(n) != refused {
		t.Fatalf("rejected_limit %v, refused %d", n, refused)
	}
}

// Issue 10: an upstream that refuses is marked down once (one log line, the
// reason), exported as relayd_upstream_up 0 with one transition, and the
// next client is closed at once as upstreams_down without a connect; an
// active check brings it back when it answers, logged and exported too.
func TestUpstreamHealthLoggedAndExported(t *testing.T) {
	// A bound, not listening port refuses; listening on it later makes it
	// answer (the kernel completes connects into the queue).
	upAddr, listen := testnet.BoundPort(t)
	up := upAddr.String()
	yaml := strings.Replace(adminYAML(up), "relay:\n", "    check: {interval: 300ms, timeout: 250ms, rise: 2, fall: 1}\nrelay:\n", 1)
	c := startRelayd(t, yaml, "")
	admin := adminAddr(t, c)
	label := fmt.Sprintf(`{listener="e2e",upstream="%s"}`, up)
	waitFor(t, 10*time.Second, "upstream marked down", func() bool {
		return scrape(t, admin, "relayd_upstream_up"+label) == 0
	})
	if n := strings.Count(c.stderr.String(), `"msg":"upstream down"`); n != 1 {
		t.Fatalf("%d 'upstream down' lines:\n%s", n, c.stderr.String())
	}
	cl, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err == nil {
		_ = cl.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := cl.Read(make([]byte, 1)); err == nil {
			t.Fatal("a client of a down upstream got data")
		}
		cl.Close()
	}
	waitFor(t, 10*time.Second, "the client closed as upstreams_down", func() bool {
		return scrape(t, admin, `relayd_sessions_closed_total{reason="upstreams_down"}`) == 1
	})
	if n := scrape(t, admin, "relayd_connector_attempts_total"); n != 0 {
		t.Fatalf("%v connect attempts to a down upstream", n)
	}
	listen()
	waitFor(t, 10*time.Second, "upstream back up", func() bool {
		return scrape(t, admin, "relayd_upstream_up"+label) == 1
	})
	if n := scrape(t, admin, "relayd_upstream_transitions_total"+label); n != 2 {
		t.Fatalf("%v transitions, want 2", n)
	}
	if !strings.Contains(c.stderr.String(), `"msg":"upstream up"`) {
		t.Fatalf("no 'upstream up' line:\n%s", c.stderr.String())
	}
}
