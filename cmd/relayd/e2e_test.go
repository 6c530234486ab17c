package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/testnet"
)

var relaydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relayd-e2e")
	if err != nil {
		panic(err)
	}
	relaydBin = filepath.Join(dir, "relayd")
	args := []string{"build", "-o", relaydBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building relayd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// child is a relayd process under test.
type child struct {
	cmd     *exec.Cmd
	addr    string // first listener's bound address, from the ready line
	stderr  *lockedBuf
	done    chan error
	cfgFile string
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startRelayd runs `relayd serve` with a config file body (YAML) through sh,
// so that shellPrefix (e.g. "ulimit -n 64;") applies to it alone, and waits
// for its ready line.
func startRelayd(t *testing.T, yaml, shellPrefix string, extra ...string) *child {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "relayd.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-c", shellPrefix + ` exec "$0" serve --config "$@"`, relaydBin, cfgFile}, extra...)
	cmd := exec.Command("sh", args...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	// A real pipe, not an io.Writer: exec would otherwise copy through a
	// goroutine that Wait waits for, and an upgraded successor holding the
	// pipe would keep Wait from returning when this process exits.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: &lockedBuf{}, done: make(chan error, 1), cfgFile: cfgFile}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { pr.Close() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			c.stderr.Write([]byte(line + "\n"))
			if strings.Contains(line, "relayd ready") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil {
					for k, v := range m {
						if strings.HasPrefix(k, "listen.") {
							select {
							case ready <- v.(string):
							default:
							}
						}
					}
				}
			}
		}
	}()
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("relayd stderr:\n%s", c.stderr.String())
		}
	})
	select {
	case c.addr = <-ready:
	case err := <-c.done:
		t.Fatalf("relayd exited before ready: %v\n%s", err, c.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("relayd not ready\n%s", c.stderr.String())
	}
	return c
}

func (c *child) wait(t *testing.T, within time.Duration) (int, time.Duration) {
	t.Helper()
	t0 := time.Now()
	select {
	case err := <-c.done:
		c.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), time.Since(t0)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, time.Since(t0)
	case <-time.After(within):
		t.Fatalf("relayd still running after %v", within)
	}
	return -1, 0
}

// tcpServer runs handle for every connection on a loopback listener; the
// test's cleanup closes it and waits for the handlers.
func tcpServer(t *testing.T, handle func(net.Conn)) *testnet.Server {
	t.Helper()
	return testnet.Serve(t, "tcp", "127.0.0.1:0", handle)
}

func echoServer(t *testing.T) *testnet.Server {
	return tcpServer(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// heldSession opens a session through addr and proves it with one echo.
func heldSession(t *testing.T, addr, msg string) net.Conn {
	t.Helper()
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := roundTrip(s, msg); err != nil {
		t.Fatal(err)
	}
	return s
}

func configYAML(upstream, extra string) string {
	return fmt.Sprintf(`listeners:
  - name: e2e
    listen: 127.0.0.1:0
    upstreams: [%s]
relay:
  loops: 2
admin:
  listen: ""
%s`, upstream, extra)
}

func roundTrip(c net.Conn, msg string) error { return testnet.RoundTrip(c, msg) }

// Acceptance 9: SIGTERM with active sessions: they complete, new connects
// are refused at once, exit code 0.
func TestSIGTERMDrains(t *testing.T) {
	up := echoServer(t)
	c := startRelayd(t, configYAML(up.Addr().String(), "shutdown:\n  timeout: 20s\n"), "")
	var sessions []net.Conn
	for range 5 {
		sessions = append(sessions, heldSession(t, c.addr, "before"))
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connects are refused promptly (bounded poll: the signal is async).
	refused := false
	for range 200 {
		s, err := net.DialTimeout("tcp", c.addr, time.Second)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("new connect after SIGTERM: %v, want ECONNREFUSED", err)
			}
			refused = true
			break
		}
		s.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Fatal("new connects still accepted 2 s after SIGTERM")
	}
	// Running sessions still relay, in both directions, until they close.
	for i, s := range sessions {
		if err := roundTrip(s, "after-"+strconv.Itoa(i)); err != nil {
			t.Fatalf("session %d after SIGTERM: %v", i, err)
		}
		s.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(s); err != nil || len(rest) != 0 {
			t.Fatalf("session %d: trailing %q err %v", i, rest, err)
		}
	}
	code, took := c.wait(t, 15*time.Second)
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, c.stderr.String())
	}
	if took > 10*time.Second {
		t.Fatalf("exit took %v after the last session closed", took)
	}
}

// The drain ends at shutdown.timeout: sessions still open are cut, exit 0.
func TestSIGTERMTimeoutCutsSessions(t *testing.T) {
	up := echoServer(t)
	c := startRelayd(t, configYAML(up.Addr().String(), "shutdown:\n  timeout: 1s\n"), "")
	s := heldSession(t, c.addr, "hold")
	t0 := time.Now()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	code, _ := c.wait(t, 15*time.Second)
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if el := time.Since(t0); el < 900*time.Millisecond {
		t.Fatalf("exited after %v, before shutdown.timeout", el)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Fatal("held session still open after the drain deadline")
	}
}

// cpuTime returns a process's user+system CPU time.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// Acceptance 8: with a low RLIMIT_NOFILE and more clients than fds, relayd
// neither crashes nor spins, and serves again once the clients go away.
func TestEMFILEBackoff(t *testing.T) {
	up := echoServer(t)
	// An explicit cap far above what 64 fds hold: the derived default
	// would refuse clients before the fds run out (TestFDLimitDerivesSessionCap).
	c := startRelayd(t, configYAML(up.Addr().String(), "log:\n  access: false\nlimits:\n  max_sessions: 100000\n"), "ulimit -n 64;")
	pid := c.cmd.Process.Pid
	var clients []net.Conn
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	reset := 0
	for range 150 {
		cl, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			// Accepted and reset before the dial returned: the first
			// burst, clients relayd took but had no upstream fd for.
			reset++
			continue
		}
		if err != nil {
			t.Logf("dial %d: %v", len(clients), err)
			break // the backlog is full: also saturation
		}
		clients = append(clients, cl)
	}
	if len(clients)+reset < 64 {
		t.Fatalf("only %d clients connected (%d reset); cannot saturate", len(clients), reset)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.stderr.String(), "accept failing, backing off") {
		if time.Now().After(deadline) {
			t.Fatalf("relayd never hit the fd limit:\n%s", c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The saturated steady state: three windows of 500 ms in a row, each
	// under 10% of a core. The first burst (clients accepted, refused an
	// upstream socket, reset) may take a window or two to settle; a relayd
	// that spins never gets there. Bounded: 12 windows.
	calm := 0
	for w := 0; calm < 3; w++ {
		if w == 12 {
			t.Fatalf("relayd kept using more than 10%% of a core while saturated (spinning?)")
		}
		cpu0, t0 := cpuTime(t, pid), time.Now()
		time.Sleep(500 * time.Millisecond) // a measurement window, not a wait for a state
		if frac := float64(cpuTime(t, pid)-cpu0) / float64(time.Since(t0)); frac > 0.10 {
			calm = 0
			continue
		}
		calm++
	}
	for _, cl := range clients {
		cl.Close()
	}
	clients = nil
	// Served again, by itself, within the maximum back-off and some slack.
	deadline = time.Now().Add(15 * time.Second)
	for {
		s, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
		if err == nil {
			err = roundTrip(s, "recovered")
			s.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relayd did not recover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// A taken admin port fails the start before "relayd ready" is logged, with
// an error that names admin.listen, and exit 1 (a runtime error: the port may
// be free again when the supervisor retries).
func TestAdminPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := filepath.Join(t.TempDir(), "relayd.yaml")
	yaml := strings.Replace(configYAML("127.0.0.1:9", ""), "admin:\n  listen: \"\"", "admin:\n  listen: "+taken.Addr().String(), 1)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relaydBin, "serve", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1\n%s", err, stderr.String())
	}
	if out := stderr.String(); !strings.Contains(out, "admin.listen") || strings.Contains(out, "relayd ready") {
		t.Fatalf("want an error naming admin.listen and no ready line:\n%s", out)
	}
}

// Usage errors exit 2, as the README promises: an unknown command or flag,
// a missing required flag, stray arguments.
func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"serve", "--bogus"}, {"config", "check"}, {"version", "extra"}, {"serve", "--listen"}} {
		err := exec.Command(relaydBin, args...).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("relayd %v: %v, want exit 2", args, err)
		}
	}
}

// Acceptance 10: config check names the key of each problem and exits 2.
func TestConfigCheckRejects(t *testing.T) {
	cases := []struct{ name, yaml, key string }{
		{"unknown key", "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: [127.0.0.1:7001]\nrelay:\n  bufer_size: 1024\n", "relay.bufer_size"},
		{"negative buffer", "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: [127.0.0.1:7001]\nrelay:\n  buffer_size: -1\n", "relay.buffer_size"},
		{"bad address", "listeners:\n  - listen: 127.0.0.1:notaport\n    upstreams: [127.0.0.1:7001]\n", "listeners[0].listen"},
		{"zero upstreams", "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: []\n", "listeners[0].upstreams"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(relaydBin, "config", "check", "--config", f).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("err %v, want exit code 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.key) {
				t.Fatalf("output does not name %s:\n%s", tc.key, out)
			}
		})
	}
	// And the reference config passes, printing the effective config.
	out, err := exec.Command(relaydBin, "config", "check", "--config", "../../configs/relayd.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "buffer_size") {
		t.Fatalf("reference config: %v\n%s", err, out)
	}
}

func (l *lockedBuf) Reset() { l.mu.Lock(); defer l.mu.Unlock(); l.b.Reset() }
