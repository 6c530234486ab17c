package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/admin"
	"github.com/relayd/relayd/internal/testbrowser"
)

const testToken = "0123456789abcdef-token"

// controlYAML is a relayd with one listener over upstreams a and b (one
// loop, so sessions alternate between them), the admin endpoint and the
// control socket sock.
func controlYAML(procs int, listener, a, b, sock string) string {
	return fmt.Sprintf(`processes: %d
listeners:
  - name: %s
    listen: 127.0.0.1:0
    upstreams: [%s, %s]
relay:
  loops: 1
admin:
  listen: 127.0.0.1:0
  socket: %s
`, procs, listener, a, b, sock)
}

// taggedSession opens a session through addr and returns the upstream's
// tag and the open connection (proven by one echo).
func taggedSession(t *testing.T, addr string) (byte, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tag := make([]byte, 1)
	if _, err := io.ReadFull(c, tag); err != nil {
		t.Fatalf("tag: %v", err)
	}
	if err := roundTrip(c, "held"); err != nil {
		t.Fatal(err)
	}
	return tag[0], c
}

// ctl runs `relayd ctl ARGS` and returns its output and exit error.
func ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(relaydBin, append([]string{"ctl"}, args...)...).CombinedOutput()
	return string(out), err
}

func ctlUpstreams(t *testing.T, sock string) map[string]admin.UpstreamInfo {
	t.Helper()
	out, err := exec.Command(relaydBin, "ctl", "--socket", sock, "--json", "upstreams").Output()
	if err != nil {
		t.Fatalf("ctl upstreams: %v %s", err, out)
	}
	var list []admin.UpstreamInfo
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("ctl upstreams: %v\n%s", err, out)
	}
	m := map[string]admin.UpstreamInfo{}
	for _, u := range list {
		m[u.Upstream] = u
	}
	return m
}

// A drained upstream gets no new session while its open ones go on and
// end normally, /upstreams says "draining" with its live session count,
// and enable brings traffic back — without a reload, in one process and
// with a master and workers (where a worker killed meanwhile comes back
// drained too). State changes over TCP need the token; the socket is
// refused to another user.
func TestControlDrainEnable(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("processes=%d", procs), func(t *testing.T) { controlDrainEnable(t, procs) })
	}
}

func controlDrainEnable(t *testing.T, procs int) {
	a, b := tagEcho(t, 'A'), tagEcho(t, 'B')
	aAddr, bAddr := a.Addr().String(), b.Addr().String()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	c := startRelayd(t, controlYAML(procs, "e2e", aAddr, bAddr, sock)+"  token: "+testToken+"\n", "")
	adm := adminAddr(t, c)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("control socket: %v %v", fi.Mode(), err)
	}
	held := holdBoth(t, c.addr)
	// /sessions lists exactly the held ones, with their bytes: 4 up
	// ("held"), 1 + 4 down (the tag, the echo).
	checkSessions(t, sock, held, aAddr, bAddr)

	// The effective config, the token redacted; with workers, the workers.
	getJSON := func(path string, out any) {
		resp, err := http.Get("http://" + adm + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
	}
	var cfg struct {
		Processes any `json:"processes"`
		Listeners []struct {
			Name string `json:"name"`
		} `json:"listeners"`
		Admin map[string]any `json:"admin"`
	}
	getJSON("/config", &cfg)
	if len(cfg.Listeners) != 1 || cfg.Listeners[0].Name != "e2e" || cfg.Admin["token"] != "<redacted>" || cfg.Admin["socket"] != sock {
		t.Fatalf("/config: %+v", cfg)
	}
	if procs > 1 {
		var ws []struct {
			Worker int  `json:"worker"`
			PID    int  `json:"pid"`
			Ready  bool `json:"ready"`
		}
		getJSON("/workers", &ws)
		if len(ws) != procs || !ws[0].Ready || !ws[1].Ready || ws[0].PID == 0 {
			t.Fatalf("/workers: %+v", ws)
		}
	}

	if out, err := ctl(t, "--socket", sock, "drain", "e2e", aAddr); err != nil || !strings.Contains(out, "draining (was enabled)") {
		t.Fatalf("ctl drain: %v %s", err, out)
	}
	waitFor(t, 10*time.Second, "A draining with its open session", func() bool {
		u := ctlUpstreams(t, sock)[aAddr]
		return u.State == "draining" && u.Admin == "draining" && u.Health == "up" && u.SessionsActive == 1
	})
	for range 30 {
		if tag, conn := taggedSession(t, c.addr); tag != 'B' {
			t.Fatalf("a new session reached the drained upstream %c", tag)
		} else {
			conn.Close()
		}
	}
	if err := roundTrip(held['A'], "still relayed"); err != nil {
		t.Fatalf("the drained upstream's open session: %v", err)
	}
	if procs > 1 {
		// Workers that die come back with the state the master keeps
		// (every one is killed: the test's one source address is steered
		// to one of them).
		pids := workerPIDs(c)
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		waitFor(t, 20*time.Second, "replacement workers ready", func() bool {
			now := workerPIDs(c)
			for i, p := range pids {
				if now[i] == 0 || now[i] == p {
					return false
				}
			}
			return true
		})
		for range 30 {
			if tag, conn := taggedSession(t, c.addr); tag != 'B' {
				t.Fatalf("after a worker restart, a new session reached the drained upstream")
			} else {
				conn.Close()
			}
		}
	}

	// Over TCP: refused without the token, and nothing changes.
	post := func(token string) int {
		form := url.Values{"listener": {"e2e"}, "upstream": {aAddr}, "state": {"enable"}}
		req, _ := http.NewRequest("POST", "http://"+adm+"/upstreams/state", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tok := range []string{"", "wrong-token-0123456789"} {
		if code := post(tok); code != http.StatusUnauthorized {
			t.Fatalf("POST with token %q: %d, want 401", tok, code)
		}
	}
	if u := ctlUpstreams(t, sock)[aAddr]; u.State != "draining" {
		t.Fatalf("a refused request changed the state to %q", u.State)
	}
	// Another user cannot use the socket (mode 0600).
	if os.Geteuid() == 0 {
		_ = os.Chmod(filepath.Dir(relaydBin), 0o755)
		cmd := exec.Command(relaydBin, "ctl", "--socket", sock, "enable", "e2e", aAddr)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(string(out), "permission denied") {
			t.Fatalf("ctl as another user: %v %s", err, out)
		}
		if u := ctlUpstreams(t, sock)[aAddr]; u.State != "draining" {
			t.Fatalf("another user changed the state to %q", u.State)
		}
	}

	// With the token over TCP: enable, and traffic returns.
	if out, err := ctl(t, "--admin", adm, "--token", testToken, "enable", "e2e", aAddr); err != nil || !strings.Contains(out, "enabled (was draining)") {
		t.Fatalf("ctl enable over TCP: %v %s", err, out)
	}
	waitFor(t, 20*time.Second, "a new session on A again", func() bool {
		tag, conn := taggedSession(t, c.addr)
		conn.Close()
		return tag == 'A'
	})
	if out, err := ctl(t, "--socket", sock, "drain", "e2e", "127.0.0.1:1"); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("drain of an unknown upstream: %v %s", err, out)
	}
	for _, conn := range held {
		conn.Close()
	}
	checkClose(t, c, sock, adm, procs, aAddr, bAddr)
	if !strings.Contains(c.stderr.String(), `"msg":"upstream admin state"`) || !strings.Contains(c.stderr.String(), `"by":"socket uid `) ||
		!strings.Contains(c.stderr.String(), `"by":"token from 127.0.0.1:`) {
		t.Fatalf("state changes not logged with who made them:\n%s", c.stderr.String())
	}
}

// The status page at / renders in a real browser from the JSON API and the
// metrics alone: a row per listener and upstream, the open session
// counted, and a drain shows on the page at its next refresh — served by one
// process, and by a master from what its workers answer.
func TestStatusPage(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("processes=%d", procs), func(t *testing.T) { statusPage(t, procs) })
	}
}

func statusPage(t *testing.T, procs int) {
	a, b := tagEcho(t, 'A'), tagEcho(t, 'B')
	aAddr := a.Addr().String()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	c := startRelayd(t, controlYAML(procs, "web", aAddr, b.Addr().String(), sock), "")
	adm := adminAddr(t, c)
	_, held := taggedSession(t, c.addr)
	defer held.Close()
	p := testbrowser.Open(t, "http://"+adm+"/")
	p.WaitFor(t, 15*time.Second, "a row per listener and upstream",
		`document.querySelectorAll("#listeners tr.listener").length === 1 && document.querySelectorAll("#upstreams tr.upstream").length === 2`)
	p.WaitFor(t, 15*time.Second, "the open session counted",
		`document.querySelector('#listeners tr.listener[data-listener="web"]').children[2].textContent === "1"`)
	state := fmt.Sprintf(`document.querySelector('#upstreams tr.upstream[data-upstream="%s"] td.state').textContent`, aAddr)
	if got := testbrowser.Eval[string](t, p, state); got != "up" {
		t.Fatalf("upstream A shows %q, want up", got)
	}
	if out, err := ctl(t, "--socket", sock, "drain", "web", aAddr); err != nil {
		t.Fatalf("ctl drain: %v %s", err, out)
	}
	p.WaitFor(t, 15*time.Second, "the drain on the page", state+` === "draining"`)
	if pr := p.Problems(); len(pr) > 0 {
		t.Fatalf("the page reported problems: %q", pr)
	}
	for _, r := range p.Requests() {
		if !strings.HasPrefix(r, "http://"+adm+"/") {
			t.Fatalf("the page fetched %s: not self-contained", r)
		}
	}
}

// holdBoth opens sessions until it holds one on upstream A and one on B.
func holdBoth(t *testing.T, addr string) map[byte]net.Conn {
	t.Helper()
	held := map[byte]net.Conn{}
	for i := 0; i < 20 && len(held) < 2; i++ {
		tag, conn := taggedSession(t, addr)
		if held[tag] == nil {
			held[tag] = conn
		} else {
			conn.Close()
		}
	}
	if held['A'] == nil || held['B'] == nil {
		t.Fatalf("sessions reached %d upstreams, want both", len(held))
	}
	return held
}

// ctlSessions is `relayd ctl --json sessions ARGS`.
func ctlSessions(t *testing.T, sock string, args ...string) admin.SessionsPage {
	t.Helper()
	out, err := exec.Command(relaydBin, append([]string{"ctl", "--socket", sock, "--json", "sessions"}, args...)...).Output()
	if err != nil {
		t.Fatalf("ctl sessions %v: %v", args, err)
	}
	var p admin.SessionsPage
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return p
}

// checkClose: `relayd ctl close ID` resets exactly that session (its
// client sees the connection end), `close --upstream` every session on
// it, each counted as admin_closed and logged with who asked; a master
// wants the worker of an ID.
func checkClose(t *testing.T, c *child, sock, adm string, procs int, aAddr, bAddr string) {
	t.Helper()
	held := holdBoth(t, c.addr)
	var p admin.SessionsPage
	waitFor(t, 10*time.Second, "only the two held sessions open", func() bool {
		p = ctlSessions(t, sock, "--listener", "e2e")
		return p.Total == 2 && len(p.Sessions) == 2
	})
	var onB admin.SessionJSON
	for _, s := range p.Sessions {
		if s.Upstream == bAddr {
			onB = s
		}
	}
	if onB.ID == 0 {
		t.Fatalf("no session on %s: %+v", bAddr, p.Sessions)
	}
	id := fmt.Sprintf("%x", onB.ID)
	if procs > 1 {
		if out, err := ctl(t, "--socket", sock, "close", id); err == nil || !strings.Contains(out, "400") || !strings.Contains(out, "worker") {
			t.Fatalf("close by id without the worker, on a master: %v %s", err, out)
		}
	}
	if out, err := ctl(t, "--socket", sock, "close", id, "--worker", fmt.Sprint(onB.Worker)); err != nil || out != "1 sessions closed\n" {
		t.Fatalf("ctl close %s: %v %q", id, err, out)
	}
	ended := func(conn net.Conn) error {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(make([]byte, 1))
		if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("read %d, %v: want the connection ended", n, err)
		}
		return nil
	}
	if err := ended(held['B']); err != nil {
		t.Fatalf("the closed session: %v", err)
	}
	if err := roundTrip(held['A'], "not closed"); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	if p := ctlSessions(t, sock); p.Total != 1 || p.Sessions[0].Upstream != aAddr {
		t.Fatalf("after closing one: %+v", p)
	}
	// Every session of an upstream; nothing left to close after that.
	if out, err := ctl(t, "--socket", sock, "close", "--upstream", aAddr); err != nil || out != "1 sessions closed\n" {
		t.Fatalf("ctl close --upstream: %v %q", err, out)
	}
	if err := ended(held['A']); err != nil {
		t.Fatalf("the upstream's session: %v", err)
	}
	if out, err := ctl(t, "--socket", sock, "close", "--upstream", aAddr); err != nil || out != "0 sessions closed\n" {
		t.Fatalf("ctl close --upstream again: %v %q", err, out)
	}
	if out, err := ctl(t, "--socket", sock, "close"); err == nil || !strings.Contains(out, "close what?") {
		t.Fatalf("ctl close without a filter: %v %s", err, out)
	}
	// Over TCP, only with the token.
	if out, err := ctl(t, "--admin", adm, "--token", "", "close", "--listener", "e2e"); err == nil || !strings.Contains(out, "401") {
		t.Fatalf("close over TCP without the token: %v %s", err, out)
	}
	// With workers, the master's sum is read every few seconds.
	waitFor(t, 30*time.Second, "2 sessions counted as admin_closed", func() bool {
		return scrape(t, adm, `relayd_listener_sessions_closed_total{listener="e2e",reason="admin_closed"}`) == 2
	})
	if !strings.Contains(c.stderr.String(), `"msg":"sessions closed"`) || !strings.Contains(c.stderr.String(), `"upstream":"`+aAddr+`","closed":1,"by":"socket uid `) {
		t.Fatalf("closes not logged with who asked:\n%s", c.stderr.String())
	}
}

func checkSessions(t *testing.T, sock string, held map[byte]net.Conn, aAddr, bAddr string) {
	t.Helper()
	page := func(args ...string) admin.SessionsPage { return ctlSessions(t, sock, args...) }
	var p admin.SessionsPage
	waitFor(t, 10*time.Second, "the held sessions' bytes counted", func() bool {
		p = page("--listener", "e2e")
		ok := p.Total == len(held)
		for _, s := range p.Sessions {
			ok = ok && s.BytesUp == 4 && s.BytesDown == 5
		}
		return ok
	})
	want := map[string]string{} // client -> upstream
	for tag, conn := range held {
		want[conn.LocalAddr().String()] = map[byte]string{'A': aAddr, 'B': bAddr}[tag]
	}
	for _, s := range p.Sessions {
		if want[s.Client] != s.Upstream || s.State != "relaying" || s.Listener != "e2e" {
			t.Fatalf("session %+v: want client %v on %q", s, s.Client, want[s.Client])
		}
		delete(want, s.Client)
	}
	if len(want) != 0 {
		t.Fatalf("held sessions not listed: %v (got %+v)", want, p.Sessions)
	}
	if p := page("--upstream", aAddr); p.Total != 1 || len(p.Sessions) != 1 || p.Sessions[0].Upstream != aAddr {
		t.Fatalf("--upstream %s: %+v", aAddr, p)
	}
	if p := page("--limit", "1", "--offset", "1"); p.Total != 2 || len(p.Sessions) != 1 || p.Offset != 1 {
		t.Fatalf("second page of one: %+v", p)
	}
	if p := page("--client", "10.0.0.0/8"); p.Total != 0 || len(p.Sessions) != 0 {
		t.Fatalf("--client 10.0.0.0/8: %+v", p)
	}
}

// log.access_on_connect and log.access_interval reach the workers: a held
// session gets its start line when the upstream connects and interim lines
// with its bytes so far while it stays open, then its end line.
func TestAccessIntervalLines(t *testing.T) {
	up := tagEcho(t, 'A')
	c := startRelayd(t, fmt.Sprintf(`processes: 2
listeners:
  - name: e2e
    listen: 127.0.0.1:0
    upstreams: [%s]
log:
  access_interval: 1s
  access_on_connect: true
`, up.Addr()), "")
	tag, conn := taggedSession(t, c.addr)
	if tag != 'A' {
		t.Fatalf("tag %c", tag)
	}
	client := conn.LocalAddr().String()
	line := func(msg, rest string) string {
		return `"msg":"` + msg + `","listener":"e2e","client":"` + client + `","upstream":"` + up.Addr().String() + rest
	}
	waitFor(t, 20*time.Second, "start and interim lines of the held session", func() bool {
		e := c.stderr.String()
		return strings.Contains(e, line("session_start", `","loop":`)) && strings.Contains(e, line("session_interim", `","loop":`)) &&
			strings.Contains(e, `"bytes_up":4,"bytes_down":5,"retries":0}`)
	})
	if strings.Contains(c.stderr.String(), line("session", "")) {
		t.Fatal("an end line for the open session")
	}
	conn.Close()
	waitFor(t, 20*time.Second, "the end line", func() bool {
		return strings.Contains(c.stderr.String(), line("session", `","loop":`))
	})
}
