package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/testnet"
)

// tagEcho is an upstream that first sends its one-byte tag, then echoes.
func tagEcho(t *testing.T, tag byte) *testnet.Server {
	return tcpServer(t, func(c net.Conn) {
		if _, err := c.Write([]byte{tag}); err == nil {
			_, _ = io.Copy(c, c)
		}
	})
}

// churn opens short sessions as fast as it can until stop: connect, read
// the tag, echo one message, close. It counts failures and the last tag seen.
type churn struct {
	ok, failed atomic.Int64
	dialFailed atomic.Int64         // of failed: the connect itself
	failedSrc  map[netip.Addr]int64 // failures by source (startChurnFrom); errMu
	lastTag    atomic.Int32
	errMu      sync.Mutex
	firstErr   error
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startChurn(addr string, workers int) *churn { return startChurnFrom(addr, workers, nil) }

// startChurnFrom is startChurn with each goroutine dialling from the next
// of sources in turn (nil: the kernel's choice).
func startChurnFrom(addr string, workers int, sources []netip.Addr) *churn {
	ch := &churn{stop: make(chan struct{}), failedSrc: map[netip.Addr]int64{}}
	for g := range workers {
		ch.wg.Add(1)
		go func() {
			defer ch.wg.Done()
			buf := make([]byte, 6)
			for i := g; ; i++ {
				d := net.Dialer{Timeout: 5 * time.Second}
				var src netip.Addr
				if len(sources) > 0 {
					src = sources[i%len(sources)]
					d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
				}
				select {
				case <-ch.stop:
					return
				default:
				}
				err := func() error {
					c, err := d.Dial("tcp", addr)
					if err != nil {
						ch.dialFailed.Add(1)
						return err
					}
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.ReadFull(c, buf[:1]); err != nil {
						return fmt.Errorf("tag: %w", err)
					}
					tag := buf[0]
					if _, err := c.Write([]byte("hello")); err != nil {
						return err
					}
					if _, err := io.ReadFull(c, buf[1:6]); err != nil || string(buf[1:6]) != "hello" {
						return fmt.Errorf("echo %q: %v", buf[1:6], err)
					}
					ch.lastTag.Store(int32(tag))
					return nil
				}()
				if err != nil {
					ch.failed.Add(1)
					ch.errMu.Lock()
					if ch.firstErr == nil {
						ch.firstErr = err
					}
					ch.failedSrc[src]++
					ch.errMu.Unlock()
				} else {
					ch.ok.Add(1)
				}
			}
		}()
	}
	return ch
}

func (ch *churn) finish() { close(ch.stop); ch.wg.Wait() }

// failedFrom is the failures by source address (after finish).
func (ch *churn) failedFrom() map[netip.Addr]int64 {
	ch.errMu.Lock()
	defer ch.errMu.Unlock()
	return maps.Clone(ch.failedSrc)
}

// longSession streams chunks through the relay for a while and checks the
// echo byte for byte (sha256), proving an established session survives.
func longSession(addr string, chunks int, every time.Duration, res chan<- error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		res <- err
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		res <- fmt.Errorf("tag: %w", err)
		return
	}
	sent, got := sha256.New(), sha256.New()
	readDone := make(chan error, 1)
	total := int64(chunks) * 16 << 10
	go func() {
		_, err := io.CopyN(got, c, total)
		readDone <- err
	}()
	chunk := make([]byte, 16<<10)
	for i := range chunks {
		for k := range chunk {
			chunk[k] = byte(i*31 + k)
		}
		sent.Write(chunk)
		if _, err := c.Write(chunk); err != nil {
			res <- fmt.Errorf("write chunk %d: %w", i, err)
			return
		}
		time.Sleep(every)
	}
	if err := <-readDone; err != nil {
		res <- fmt.Errorf("read echo: %w", err)
		return
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		res <- errors.New("checksum mismatch")
		return
	}
	res <- nil
}

func reloadConfig(upstream string) string {
	return configYAML(upstream, "log:\n  access: false\nshutdown:\n  timeout: 30s\n")
}

// Issue 5 acceptance 2: SIGHUP 10 times under load, alternating two valid
// configs with different upstreams: no failed new session, long sessions
// intact, the new upstream used after each reload; an invalid config keeps
// the old one.
func TestReloadUnderLoad(t *testing.T) {
	a, b := tagEcho(t, 'A'), tagEcho(t, 'B')
	c := startRelayd(t, reloadConfig(a.Addr().String()), "")
	cfgFile := c.cfgFile
	longs := 200
	res := make(chan error, longs)
	for range longs {
		go longSession(c.addr, 40, 100*time.Millisecond, res)
	}
	ch := startChurn(c.addr, 16)
	defer ch.finish()
	waitTag := func(want byte) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for byte(ch.lastTag.Load()) != want {
			if time.Now().After(deadline) {
				t.Fatalf("upstream %c never used after reload", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitTag('A')
	t0 := time.Now()
	for i := range 10 {
		up, tag := b, byte('B')
		if i%2 == 1 {
			up, tag = a, 'A'
		}
		if err := os.WriteFile(cfgFile, []byte(reloadConfig(up.Addr().String())), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitTag(tag)
		time.Sleep(150 * time.Millisecond) // pacing: spread the reloads over the long sessions' life, not a wait for a state
	}
	// An invalid config: logged, and the running one (A) keeps serving.
	if err := os.WriteFile(cfgFile, []byte("relay:\n  buffer_size: -5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.stderr.String(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatal("invalid config on SIGHUP not logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	okBefore := ch.ok.Load()
	waitFor(t, 10*time.Second, "sessions after the invalid reload", func() bool { return ch.ok.Load() > okBefore+20 })
	if byte(ch.lastTag.Load()) != 'A' {
		t.Fatal("not serving the old config after an invalid reload")
	}
	elapsed := time.Since(t0)
	ch.finish()
	ch.stop = make(chan struct{}) // finish again in defer is harmless
	for range longs {
		if err := <-res; err != nil {
			t.Errorf("long session: %v", err)
		}
	}
	if n := ch.failed.Load(); n != 0 {
		t.Fatalf("%d new sessions failed during reloads (first: %v)", n, ch.firstErr)
	}
	t.Logf("%d new sessions in %v (%.0f/s) across 10 reloads, 0 failed; %d long sessions intact",
		ch.ok.Load(), elapsed, float64(ch.ok.Load())/elapsed.Seconds(), longs)
}

// Issue 5 acceptance 3: SIGUSR2 under load: the new process takes over the
// listening sockets; no new connection is refused or reset, old long
// sessions complete, the old process exits once drained.
func TestUpgradeUnderLoad(t *testing.T) {
	a := tagEcho(t, 'A')
	pidFile := filepath.Join(t.TempDir(), "relayd.pid")
	c := startRelayd(t, adminYAML(a.Addr().String()), "", "--pid-file", pidFile)
	adm := adminAddr(t, c)
	oldPID := c.cmd.Process.Pid
	waitFor(t, 10*time.Second, "pid file", func() bool { return readPID(pidFile) == oldPID })
	longs := 100
	res := make(chan error, longs)
	for range longs {
		go longSession(c.addr, 30, 100*time.Millisecond, res)
	}
	ch := startChurn(c.addr, 8)
	waitFor(t, 10*time.Second, "churn through the old process", func() bool { return ch.ok.Load() > 50 })
	newPID := upgrade(t, c, pidFile)
	// The old process drains its long sessions, then exits 0 by itself.
	code, _ := c.wait(t, 40*time.Second)
	if code != 0 {
		t.Fatalf("old relayd exit code %d", code)
	}
	for range longs {
		if err := <-res; err != nil {
			t.Errorf("long session across the upgrade: %v", err)
		}
	}
	// The successor alone serves now.
	okAtExit := ch.ok.Load()
	waitFor(t, 10*time.Second, "sessions through the new process", func() bool { return ch.ok.Load() > okAtExit+50 })
	ch.finish()
	if n := ch.failed.Load(); n != 0 {
		t.Fatalf("%d new connections failed across the upgrade (first: %v)", n, ch.firstErr)
	}
	if !processAlive(newPID) {
		t.Fatal("new relayd is not running")
	}
	// The successor inherited the admin socket too and reports ready.
	if code := status(t, "http://"+adm+"/readyz"); code != 200 {
		t.Fatalf("readyz after upgrade: %d", code)
	}
	t.Logf("upgrade %d -> %d under load: %d new sessions, 0 failed; %d long sessions completed on the old process", oldPID, newPID, ch.ok.Load(), longs)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func processAlive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// stopPID ends a process this test started indirectly (the upgraded
// successor), by PID, and waits for it to go.
func stopPID(t *testing.T, pid int) {
	if !processAlive(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for range 500 {
		if !processAlive(pid) {
			return
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return // a zombie: exited, waiting for its reaper
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// Review C1: an upgrade to a process that accepts on fewer sockets (fewer
// loops, or reuseport → single) must adopt every inherited SO_REUSEPORT
// socket: one left unaccepted stays in the kernel's group and blackholes the
// connections hashed onto it. Under churn across the upgrade, and for a
// while after the old process has gone, no connect fails or hangs.
func TestUpgradeToFewerSockets(t *testing.T) {
	for _, tc := range []struct{ name, from, to string }{
		{"loops 2 to 1", "relay:\n  loops: 2\n", "relay:\n  loops: 1\n"},
		{"reuseport to single", "relay:\n  loops: 2\n", "relay:\n  loops: 2\naccept:\n  mode: single\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tagEcho(t, 'A')
			yaml := func(relay string) string {
				return strings.Replace(configYAML(a.Addr().String(), "log:\n  access: false\nshutdown:\n  timeout: 10s\n"), "relay:\n  loops: 2\n", relay, 1)
			}
			pidFile := filepath.Join(t.TempDir(), "relayd.pid")
			c := startRelayd(t, yaml(tc.from), "", "--pid-file", pidFile)
			oldPID := c.cmd.Process.Pid
			waitFor(t, 10*time.Second, "pid file", func() bool { return readPID(pidFile) == oldPID })
			ch := startChurn(c.addr, 8)
			waitFor(t, 10*time.Second, "churn through the old process", func() bool { return ch.ok.Load() > 50 })
			if err := os.WriteFile(c.cfgFile, []byte(yaml(tc.to)), 0o600); err != nil {
				t.Fatal(err)
			}
			upgrade(t, c, pidFile)
			if code, _ := c.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("old relayd exit code %d", code)
			}
			// The successor alone accepts now: half of these would land
			// on an orphaned socket if it had adopted only its own count.
			okAtExit := ch.ok.Load()
			waitFor(t, 20*time.Second, "sessions through the new process", func() bool { return ch.ok.Load() > okAtExit+400 })
			ch.finish()
			if n := ch.failed.Load(); n != 0 {
				t.Fatalf("%d connections failed or hung across the upgrade (first: %v)", n, ch.firstErr)
			}
		})
	}
}

// Review C7b: an upgrade whose new config moves a listener and whose new
// process then fails to start (here: its admin address is taken) leaves the
// old process serving on the old address. Before the fix the new process
// shut the old socket down while starting.
func TestFailedUpgradeKeepsMovedListener(t *testing.T) {
	a := tagEcho(t, 'A')
	base := configYAML(a.Addr().String(), "log:\n  access: false\n")
	c := startRelayd(t, base, "")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	moved := strings.Replace(base, "listen: 127.0.0.1:0\n    upstreams", "listen: "+freeAddr(t)+"\n    upstreams", 1)
	moved = strings.Replace(moved, "admin:\n  listen: \"\"", "admin:\n  listen: "+taken.Addr().String(), 1)
	if err := os.WriteFile(c.cfgFile, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the failed upgrade", func() bool { return strings.Contains(c.stderr.String(), "upgrade failed") })
	for i := range 20 {
		if err := tagSession(c.addr, "still here"); err != nil {
			t.Fatalf("session %d on the old address after the failed upgrade: %v", i, err)
		}
	}
}

// Review C7a: SIGTERM while a SIGUSR2 upgrade is under way. Whichever way the
// race goes, nothing is left half-done: either the new process was stopped
// and the old one drained and exited 0 (no relayd left, connects refused), or
// the new one got ready first and serves on the shared sockets.
func TestSIGTERMDuringUpgrade(t *testing.T) {
	a := tagEcho(t, 'A')
	pidFile := filepath.Join(t.TempDir(), "relayd.pid")
	c := startRelayd(t, configYAML(a.Addr().String(), "log:\n  access: false\n"), "", "--pid-file", pidFile)
	oldPID := c.cmd.Process.Pid
	waitFor(t, 10*time.Second, "pid file", func() bool { return readPID(pidFile) == oldPID })
	if err := c.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("old relayd exit code %d", code)
	}
	newPID := readPID(pidFile)
	if newPID != oldPID && processAlive(newPID) {
		t.Cleanup(func() { stopPID(t, newPID) })
		if err := tagSession(c.addr, "served by the successor"); err != nil {
			t.Fatalf("the successor %d is running but does not serve: %v", newPID, err)
		}
		t.Logf("the successor got ready first and serves")
		return
	}
	if s, err := net.DialTimeout("tcp", c.addr, 2*time.Second); err == nil {
		s.Close()
		t.Fatal("no relayd runs, yet a connect to the listener succeeded")
	}
	t.Logf("the upgrade was stopped; the old process drained")
}

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tagSession is one session through a relay to a tagEcho upstream: connect,
// read the tag, echo msg.
func tagSession(addr, msg string) error {
	s, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, make([]byte, 1)); err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	return roundTrip(s, msg)
}

// upgrade sends c SIGUSR2 and waits for the successor's PID in pidFile; the
// successor is stopped at the end of the test.
func upgrade(t *testing.T, c *child, pidFile string) int {
	t.Helper()
	oldPID := c.cmd.Process.Pid
	if err := c.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	var newPID int
	waitFor(t, 20*time.Second, "new pid in the pid file", func() bool {
		newPID = readPID(pidFile)
		return newPID != 0 && newPID != oldPID
	})
	t.Cleanup(func() { stopPID(t, newPID) })
	return newPID
}
