package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/steer"
)

// Multi-process relayd (processes ≥ 2), driven as a user would: the real
// binary, real signals, clients from 19 loopback source addresses (the
// master steers each source to one worker).

// sourceAddrs are 127.0.0.2 … 127.0.0.(n+1).
func sourceAddrs(n int) []netip.Addr {
	var out []netip.Addr
	for i := range n {
		out = append(out, netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)}))
	}
	return out
}

func dialFrom(src netip.Addr, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	return d.Dial("tcp", addr)
}

// heldFrom opens a session from src and proves it with one echo; it
// returns nil if relayd refused it (closed it before the echo).
func heldFrom(t *testing.T, src netip.Addr, addr, msg string) net.Conn {
	t.Helper()
	c, err := dialFrom(src, addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil // refused so fast that the reset beat connect's return
	}
	if err != nil {
		t.Fatalf("connect from %v: %v", src, err)
	}
	if err := roundTrip(c, msg); err != nil {
		c.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("session from %v neither echoed nor was refused: %v", src, err)
		}
		return nil // closed by relayd: refused
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func workersYAML(n int, upstream, extra string) string {
	return fmt.Sprintf(`processes: %d
listeners:
  - name: e2e
    listen: 127.0.0.1:0
    upstreams: [%s]
relay:
  loops: 1
log:
  access: false
admin:
  listen: 127.0.0.1:0
%s`, n, upstream, extra)
}

// workerPIDs reads the master's "worker ready" lines: the latest PID of
// each worker slot.
func workerPIDs(c *child) map[int]int {
	pids := map[int]int{}
	for _, line := range strings.Split(c.stderr.String(), "\n") {
		if !strings.Contains(line, `"msg":"worker ready"`) {
			continue
		}
		var m struct{ Worker, PID int }
		if json.Unmarshal([]byte(line), &m) == nil {
			pids[m.Worker] = m.PID
		}
	}
	return pids
}

// Sessions from 19 sources through 3 workers are byte-exact, and the
// master's /metrics is exactly the sum of what the workers did.
func TestWorkersServeAndMetricsSum(t *testing.T) {
	up := echoServer(t)
	c := startRelayd(t, workersYAML(3, up.Addr().String(), "accept:\n  backlog: 321\n"), "")
	adm := adminAddr(t, c)
	if got := len(workerPIDs(c)); got != 3 {
		t.Fatalf("%d workers ready, want 3", got)
	}
	// The master bound one socket per worker, with accept.backlog.
	if _, err := exec.LookPath("ss"); err == nil {
		_, port, _ := net.SplitHostPort(c.addr)
		out, err := exec.Command("ss", "-Hltn", "sport = :"+port).Output()
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		for _, l := range lines {
			if f := strings.Fields(l); len(f) < 3 || f[2] != "321" {
				t.Fatalf("listening socket %q: want backlog (Send-Q) 321", l)
			}
		}
		if len(lines) != 3 {
			t.Fatalf("%d listening sockets on %s, want one per worker:\n%s", len(lines), c.addr, out)
		}
	}
	const perSource = 20
	srcs := sourceAddrs(19)
	msg := "multi-process relayd echo 0123456789"
	var wg sync.WaitGroup
	errs := make(chan error, len(srcs)*perSource)
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perSource {
				s, err := dialFrom(src, c.addr)
				if err == nil {
					err = roundTrip(s, msg)
					s.Close()
				}
				if err != nil {
					errs <- fmt.Errorf("from %v: %w", src, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := float64(len(srcs) * perSource)
	waitFor(t, 10*time.Second, "every session closed", func() bool {
		return scrape(t, adm, `relayd_sessions_closed_total{reason="eof"}`) == n
	})
	if got := scrape(t, adm, "relayd_sessions_accepted_total"); got != n {
		t.Fatalf("relayd_sessions_accepted_total %v, want %v", got, n)
	}
	if got := scrape(t, adm, `relayd_bytes_total{direction="up"}`); got != n*float64(len(msg)) {
		t.Fatalf("bytes up %v, want %v", got, n*float64(len(msg)))
	}
	if got := scrape(t, adm, `relayd_workers{state="up"}`); got != 3 {
		t.Fatalf("relayd_workers up %v, want 3", got)
	}
	// Per-process series keep one per worker (and the master).
	if got := scrape(t, adm, `process_open_fds{worker="2"}`); got <= 0 {
		t.Fatalf("process_open_fds of worker 2: %v", got)
	}
	if code := status(t, "http://"+adm+"/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
}

// Kill -9 one of 4 workers while it holds sessions and new ones keep
// arriving from every source: only its own sessions end, no new connect
// fails (they wait in the kernel's queue for the replacement), and the
// replacement serves.
func TestWorkerKilledOnlyItsSessionsEnd(t *testing.T) {
	up := tagEcho(t, 'A')
	c := startRelayd(t, workersYAML(4, up.Addr().String(), ""), "")
	adm := adminAddr(t, c)
	srcs := sourceAddrs(19)
	const victim = 1
	type held struct {
		c      net.Conn
		worker int
	}
	var sessions []held
	for _, src := range srcs {
		for range 3 {
			s, err := dialFrom(src, c.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := tagAndEcho(s, "before"); err != nil {
				t.Fatalf("held session from %v: %v", src, err)
			}
			sessions = append(sessions, held{s, steer.Index(src, 4)})
		}
	}
	ch := startChurnFrom(c.addr, 8, srcs)
	waitFor(t, 10*time.Second, "churn going", func() bool { return ch.ok.Load() > 100 })
	old := workerPIDs(c)[victim]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var back time.Duration
	waitFor(t, 10*time.Second, "the replacement of worker 1", func() bool {
		if p := workerPIDs(c)[victim]; p != 0 && p != old {
			back = time.Since(killed)
			return true
		}
		return false
	})
	okBack := ch.ok.Load()
	waitFor(t, 10*time.Second, "churn after the restart", func() bool { return ch.ok.Load() > okBack+200 })
	ch.finish()
	// A connect never fails: what waits in the accept queue outlives the
	// worker. Sessions the victim had accepted die with it, and only those.
	if n := ch.dialFailed.Load(); n != 0 {
		t.Fatalf("%d connects failed around the kill (first: %v)", n, ch.firstErr)
	}
	for src, n := range ch.failedFrom() {
		if steer.Index(src, 4) != victim {
			t.Fatalf("%d sessions from %v (worker %d) failed with the kill of worker %d (first: %v)", n, src, steer.Index(src, 4), victim, ch.firstErr)
		}
	}
	ended, kept := 0, 0
	for _, h := range sessions {
		err := roundTrip(h.c, "after")
		switch {
		case h.worker == victim && err == nil:
			t.Fatalf("a session of the killed worker still echoes")
		case h.worker == victim:
			ended++
		case err != nil:
			t.Fatalf("a session of worker %d ended with the kill of worker %d: %v", h.worker, victim, err)
		default:
			kept++
		}
	}
	if ended == 0 {
		t.Fatal("no held session was on the killed worker; the test proves nothing")
	}
	if got := scrape(t, adm, `relayd_worker_restarts_total{worker="1"}`); got != 1 {
		t.Fatalf("restarts of worker 1: %v, want 1", got)
	}
	t.Logf("killed worker %d (pid %d): %d of its held sessions ended, %d on the others kept; replacement ready %v after the kill; %d new sessions ok, 0 connects failed, %d in flight on the victim cut",
		victim, old, ended, kept, back.Round(time.Millisecond), ch.ok.Load(), ch.failed.Load())
}

// tagAndEcho reads a tagEcho upstream's tag, then round-trips msg.
func tagAndEcho(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	return roundTrip(c, msg)
}

// per_source_sessions with 4 workers admits exactly that many per source;
// limits.max_sessions and a listener's max_sessions count over all workers
// together. Sessions open one at a time, so the counts are exact.
func TestWorkersLimitsExact(t *testing.T) {
	up := echoServer(t)
	addrs := map[string]string{"src": freeAddr(t), "capped": freeAddr(t), "free": freeAddr(t)}
	yaml := fmt.Sprintf(`processes: 4
listeners:
  - name: src
    listen: %s
    upstreams: [%s]
    limits:
      per_source_sessions: 3
  - name: capped
    listen: %s
    upstreams: [%s]
    max_sessions: 10
  - name: free
    listen: %s
    upstreams: [%s]
limits:
  max_sessions: 70
relay:
  loops: 1
log:
  access: false
admin:
  listen: 127.0.0.1:0
`, addrs["src"], up.Addr(), addrs["capped"], up.Addr(), addrs["free"], up.Addr())
	c := startRelayd(t, yaml, "")
	adm := adminAddr(t, c)
	srcs := sourceAddrs(19)
	admitted := func(listener string, perSource int) (n int, bySource map[netip.Addr]int) {
		bySource = map[netip.Addr]int{}
		for _, src := range srcs {
			for range perSource {
				if heldFrom(t, src, addrs[listener], "limit") != nil {
					n++
					bySource[src]++
				}
			}
		}
		return n, bySource
	}
	n, by := admitted("src", 5)
	for src, k := range by {
		if k != 3 {
			t.Errorf("source %v: %d sessions admitted, per_source_sessions is 3", src, k)
		}
	}
	if n != 57 {
		t.Fatalf("src: %d admitted, want 19 × 3 = 57", n)
	}
	if n, _ := admitted("capped", 1); n != 10 {
		t.Fatalf("capped: %d admitted, want its max_sessions 10", n)
	}
	if n, _ := admitted("free", 1); n != 3 {
		t.Fatalf("free: %d admitted, want the 3 left of limits.max_sessions 70", n)
	}
	if got := scrape(t, adm, `relayd_sessions_closed_total{reason="rejected_source_limit"}`); got != 38 {
		t.Fatalf("rejected_source_limit %v, want 38", got)
	}
	if got := scrape(t, adm, `relayd_sessions_closed_total{reason="rejected_limit"}`); got != 9+16 {
		t.Fatalf("rejected_limit %v, want 25", got)
	}
	if got := scrape(t, adm, "relayd_sessions_active"); got != 70 {
		t.Fatalf("sessions active %v, want 70", got)
	}
}

// SIGHUP ×10 under load with 4 workers: every reload validated once in the
// master and applied by every worker; long checksummed flows and new
// sessions all succeed; the last reload moves the upstream (new sessions see
// it) and adds a listener that every worker serves. Then SIGTERM drains
// everything and the master exits 0.
func TestWorkersReloadUnderLoadThenTERM(t *testing.T) {
	a, b := tagEcho(t, 'A'), tagEcho(t, 'B')
	second := freeAddr(t)
	cfg := func(upstream, extra string) string {
		return workersYAML(4, upstream, "shutdown:\n  timeout: 30s\n") + extra
	}
	c := startRelayd(t, cfg(a.Addr().String(), ""), "")
	srcs := sourceAddrs(19)
	res := make(chan error, 20)
	for range 20 {
		go longSession(c.addr, 40, 100*time.Millisecond, res)
	}
	ch := startChurnFrom(c.addr, 8, srcs)
	waitFor(t, 10*time.Second, "churn going", func() bool { return ch.ok.Load() > 100 })
	const reloads = 10
	for i := range reloads {
		body := cfg(a.Addr().String(), "")
		if i == reloads-1 {
			body = strings.Replace(cfg(b.Addr().String(), ""), "listeners:\n", fmt.Sprintf("listeners:\n  - name: added\n    listen: %s\n    upstreams: [%s]\n", second, b.Addr()), 1)
		}
		if err := os.WriteFile(c.cfgFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(c.stderr.String(), `"msg":"config reloaded","gen"`)
		if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the master's reload line", func() bool {
			return strings.Count(c.stderr.String(), `"msg":"config reloaded","gen"`) > before
		})
		waitFor(t, 5*time.Second, "more churn", func() bool { return ch.ok.Load() > int64(100*(i+2)) })
	}
	if strings.Contains(c.stderr.String(), "some workers failed") {
		t.Fatal("a worker failed to apply a reload")
	}
	waitFor(t, 10*time.Second, "churn on upstream B", func() bool { return ch.lastTag.Load() == 'B' })
	ch.finish()
	if n := ch.failed.Load(); n != 0 {
		t.Fatalf("%d sessions failed across %d reloads (first: %v)", n, reloads, ch.firstErr)
	}
	// The listener the reload added: every worker got its socket, so every
	// source is served.
	for _, src := range srcs {
		s, err := dialFrom(src, second)
		if err != nil {
			t.Fatalf("added listener from %v: %v", src, err)
		}
		if err := tagAndEcho(s, "added"); err != nil {
			t.Fatalf("added listener from %v (worker %d): %v", src, steer.Index(src, 4), err)
		}
		s.Close()
	}
	for range 20 {
		if err := <-res; err != nil {
			t.Fatalf("long session across the reloads: %v", err)
		}
	}
	held, err := dialFrom(srcs[0], c.addr)
	if err == nil {
		err = tagAndEcho(held, "held")
	}
	if err != nil {
		t.Fatalf("held session: %v", err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "draining", func() bool { return strings.Contains(c.stderr.String(), `"msg":"draining"`) })
	// New clients are refused at once while the held one finishes.
	if s, err := net.DialTimeout("tcp", c.addr, 2*time.Second); err == nil {
		s.Close()
		t.Fatal("a connect succeeded while draining")
	}
	held.Close()
	if code, took := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after %v", code, took)
	}
	for w, pid := range workerPIDs(c) {
		if processAlive(pid) && !isZombie(pid) {
			t.Fatalf("worker %d (pid %d) outlived the master", w, pid)
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(b), ") Z ")
}

// A worker that hangs in its drain (stopped with SIGSTOP here) is killed at
// the deadline; the master still exits 0.
func TestWorkerHungInDrainIsKilled(t *testing.T) {
	up := echoServer(t)
	c := startRelayd(t, workersYAML(2, up.Addr().String(), "shutdown:\n  timeout: 1s\n"), "")
	pid := workerPIDs(c)[0]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, took := c.wait(t, 30*time.Second)
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	killedIt := false
	for _, line := range strings.Split(c.stderr.String(), "\n") {
		killedIt = killedIt || (strings.Contains(line, "killing it") && strings.Contains(line, fmt.Sprintf(`"pid":%d`, pid)))
	}
	if !killedIt {
		t.Fatalf("the hung worker was not killed at the deadline:\n%s", c.stderr.String())
	}
	if processAlive(pid) && !isZombie(pid) {
		t.Fatalf("the stopped worker %d still runs", pid)
	}
	t.Logf("master exited %v after SIGTERM with shutdown.timeout 1s", took.Round(time.Millisecond))
}

// Workers that cannot start (their log files cannot be opened) make the
// master give up and exit 1, naming why, instead of restarting forever.
func TestWorkersFailingStartMasterExits(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "relayd.log")
	for _, w := range []string{"relayd.w0.log", "relayd.w1.log"} {
		if err := os.Mkdir(filepath.Join(dir, w), 0o700); err != nil { // a directory where the file should be
			t.Fatal(err)
		}
	}
	cfgFile := filepath.Join(dir, "relayd.yaml")
	body := strings.Replace(workersYAML(2, freeAddr(t), ""), "log:\n", "log:\n  output: "+logFile+"\n", 1)
	if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relaydBin, "serve", "--config", cfgFile)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("master exit: %v, want status 1\n%s", err, out)
	}
	log, _ := os.ReadFile(logFile)
	if !strings.Contains(string(log), "no worker ever became ready") {
		t.Fatalf("the master's log does not say why:\n%s\n%s", log, out)
	}
}

// SIGUSR2 upgrades the whole tree: a new master inherits the sockets and
// starts its own workers; once they are all ready the old master's workers
// drain and it exits 0. No connect fails, long flows finish on the old
// workers, and the new tree serves.
func TestWorkersUpgradeUnderLoad(t *testing.T) {
	a := tagEcho(t, 'A')
	pidFile := filepath.Join(t.TempDir(), "relayd.pid")
	c := startRelayd(t, workersYAML(2, a.Addr().String(), "shutdown:\n  timeout: 30s\n"), "", "--pid-file", pidFile)
	adm := adminAddr(t, c)
	oldPID := c.cmd.Process.Pid
	oldWorkers := workerPIDs(c)
	waitFor(t, 10*time.Second, "pid file", func() bool { return readPID(pidFile) == oldPID })
	res := make(chan error, 20)
	for range 20 {
		go longSession(c.addr, 20, 100*time.Millisecond, res)
	}
	ch := startChurnFrom(c.addr, 8, sourceAddrs(19))
	waitFor(t, 10*time.Second, "churn through the old tree", func() bool { return ch.ok.Load() > 100 })
	newPID := upgrade(t, c, pidFile)
	code, _ := c.wait(t, 40*time.Second)
	if code != 0 {
		t.Fatalf("old master exit code %d", code)
	}
	for range 20 {
		if err := <-res; err != nil {
			t.Errorf("long session across the upgrade: %v", err)
		}
	}
	okAtExit := ch.ok.Load()
	waitFor(t, 10*time.Second, "sessions through the new tree", func() bool { return ch.ok.Load() > okAtExit+100 })
	ch.finish()
	if n := ch.failed.Load(); n != 0 {
		t.Fatalf("%d sessions failed across the upgrade (first: %v)", n, ch.firstErr)
	}
	for w, pid := range oldWorkers {
		if processAlive(pid) && !isZombie(pid) {
			t.Fatalf("old worker %d (pid %d) still runs", w, pid)
		}
	}
	if !processAlive(newPID) {
		t.Fatal("the new master is not running")
	}
	if code := status(t, "http://"+adm+"/readyz"); code != 200 {
		t.Fatalf("readyz after the upgrade: %d", code)
	}
	if got := scrape(t, adm, `relayd_workers{state="up"}`); got != 2 {
		t.Fatalf("new tree: %v workers up, want 2", got)
	}
}

// listeners[].source: upstream connects come from the listed addresses in
// turn, each relay loop keeping its own turn (the upstream sees them as the
// peers).
func TestUpstreamSourceAddresses(t *testing.T) {
	var mu sync.Mutex
	peers := map[string]int{}
	up := tcpServer(t, func(c net.Conn) {
		mu.Lock()
		peers[c.RemoteAddr().(*net.TCPAddr).IP.String()]++
		mu.Unlock()
		_, _ = io.Copy(c, c)
	})
	cfg := strings.Replace(configYAML(up.Addr().String(), ""), "    upstreams:", "    source: 127.0.0.5-127.0.0.7\n    upstreams:", 1)
	cfg = strings.Replace(cfg, "loops: 2", "loops: 1", 1) // the turn is per loop
	c := startRelayd(t, cfg, "")
	for range 9 {
		s := heldSession(t, c.addr, "from")
		s.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"127.0.0.5": 3, "127.0.0.6": 3, "127.0.0.7": 3}
	if fmt.Sprint(peers) != fmt.Sprint(want) {
		t.Fatalf("upstream saw peers %v, want %v", peers, want)
	}
}
