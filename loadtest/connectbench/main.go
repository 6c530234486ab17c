//go:build linux

// Command connectbench measures relayd's connector stage against HAProxy and
// direct connects, all on loopback, in one run: see loadtest/BENCHMARK.md
// ("Connector") and loadtest/connectbench.sh, which builds and runs it.
//
// Scenarios (-scenario, comma-separated):
//
//   - storm: N clients arrive evenly within one second (open loop: a
//     client starts at its time whatever the others are doing) into an
//     upstream whose listen backlog is 8 and that accepts as fast as it
//     can. Each client connects, writes 64 bytes, reads them back, closes.
//     Reported per system: failed sessions, session time p50/p99 (arrival
//     to last byte back), and for relayd its upstream connect latency
//     histogram from /metrics (a mode at ≥ 1 s = retransmitted SYNs).
//   - isolation: one relayd, two listeners. One's upstream is blackholed (a
//     full accept queue that is never drained: its SYNs are dropped) and
//     takes 400 sessions at 100/s; the other's is healthy and takes 50/s.
//     Reported: the healthy listener's p50/p99 and failures, alone and with
//     the blackhole beside it, and when the blackholed sessions closed.
//   - growth: the storm's upstream under a sustained open-loop rate; its
//     backlog grows from 8 to 4096 midway (listen(2) again); the adaptive
//     limit sampled from /metrics over time.
//   - rr: a fast healthy upstream, closed loop (50 workers, connect, echo
//     64 bytes, close) through relayd adaptive and fixed caps: sessions/s.
//
// Every process and socket is the harness's own; everything stops by itself.
// This is a benchmark, not a test: it prints figures, it asserts nothing.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var (
	relaydBin = flag.String("relayd", "relayd", "relayd binary")
	haproxy   = flag.String("haproxy", "haproxy", "haproxy binary (skipped if missing)")
	scenarios = flag.String("scenario", "storm,isolation,growth,rr", "scenarios to run")
	stormN    = flag.Int("storm-clients", 5000, "storm: clients")
	stormBack = flag.Int("storm-backlog", 8, "storm: the upstream's listen backlog")
	stormSpan = flag.Duration("storm-span", 0, "storm: arrivals spread evenly over this (0 = all at once, as fast as they can be started)")
	rounds    = flag.Int("rounds", 1, "storm, rr: rounds, systems in alternating order")
	rrDur     = flag.Duration("rr-duration", 5*time.Second, "rr: time per system")
	verbose   = flag.Bool("v", false, "print relayd's connect latency buckets")
	child     = flag.Int("upstream-child", 0, "internal: serve an echo upstream with this backlog, print its address, grow the backlog to 4096 on SIGUSR1")
	only      = flag.String("systems", "", "storm, rr: only these systems (comma-separated names; empty = all)")
	tmp       string
)

func main() {
	flag.Parse()
	if *child > 0 {
		serveChild(*child)
		return
	}
	var err error
	if tmp, err = os.MkdirTemp("", "connectbench"); err != nil {
		die(err)
	}
	defer os.RemoveAll(tmp)
	for _, s := range strings.Split(*scenarios, ",") {
		switch s {
		case "storm":
			storm()
		case "isolation":
			isolation()
		case "growth":
			growth()
		case "rr":
			rr()
		default:
			die(fmt.Errorf("unknown scenario %q", s))
		}
	}
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "connectbench:", err)
	os.Exit(1)
}

// --- upstream --------------------------------------------------------------

// upstream is an echo server on a raw listening socket, so that its backlog
// is exactly what the scenario says (net.Listen uses somaxconn), and it can
// be changed while running (listen(2) again).
type upstream struct {
	fd   int
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	hold bool       // never accept: a blackhole once the queue is full
	held []net.Conn // the connections that fill a blackhole's queue
	cmd  *exec.Cmd  // the upstream's own process (spawnUpstream), or nil
}

func newUpstream(backlog int, hold bool) *upstream {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		die(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		die(err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		die(err)
	}
	sa, _ := unix.Getsockname(fd)
	u := &upstream{fd: fd, addr: fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port), hold: hold}
	if hold {
		// Fill the queue (backlog+1 completed connections) so that every
		// later SYN is dropped.
		for range backlog + 1 {
			c, err := net.DialTimeout("tcp", u.addr, time.Second)
			if err != nil {
				die(fmt.Errorf("filling the blackhole: %w", err))
			}
			u.held = append(u.held, c)
		}
		return u
	}
	f := os.NewFile(uintptr(fd), "upstream")
	ln, err := net.FileListener(f)
	if err != nil {
		die(err)
	}
	f.Close()
	// FileListener dup'ed the socket: the backlog applies to it, and
	// setBacklog uses the listener's own fd from here on.
	u.ln = ln
	rc, _ := ln.(*net.TCPListener).SyscallConn()
	_ = rc.Control(func(fd uintptr) { u.fd = int(fd) })
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "connectbench: upstream accept:", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return u
}

func (u *upstream) setBacklog(n int) {
	if u.cmd != nil {
		_ = u.cmd.Process.Signal(syscall.SIGUSR1)
		return
	}
	_ = unix.Listen(u.fd, n)
}

// spawnUpstream runs the echo upstream in a process of its own, as a real
// upstream is: in the harness's own runtime its accept loop would compete
// with thousands of client goroutines for the scheduler, and its listen
// queue would overflow for reasons that have nothing to do with the
// system under test.
func spawnUpstream(backlog int) *upstream {
	self, err := os.Executable()
	if err != nil {
		die(err)
	}
	cmd := exec.Command(self, "-upstream-child", strconv.Itoa(backlog))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		die(err)
	}
	if err := cmd.Start(); err != nil {
		die(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		die(fmt.Errorf("upstream child: %w", err))
	}
	return &upstream{addr: strings.TrimSpace(line), cmd: cmd}
}

func serveChild(backlog int) {
	u := newUpstream(backlog, false)
	fmt.Println(u.addr)
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	for s := range sig {
		if s == syscall.SIGUSR1 {
			u.setBacklog(4096)
			continue
		}
		u.close()
		return
	}
}

func (u *upstream) close() {
	if u.cmd != nil {
		_ = u.cmd.Process.Signal(syscall.SIGTERM)
		_ = u.cmd.Wait()
		return
	}
	for _, c := range u.held {
		c.Close()
	}
	if u.hold {
		unix.Close(u.fd)
	}
	if u.ln != nil {
		u.ln.Close()
		u.wg.Wait()
	}
}

// --- clients ---------------------------------------------------------------

type outcome struct {
	session time.Duration // arrival to last byte back, or to the failure
	dial    time.Duration // arrival to the proxy's (or upstream's) accept
	err     error
}

// oneSession connects, echoes 64 bytes and closes.
func oneSession(target string, msg []byte) outcome {
	t0 := time.Now()
	fail := func(err error) outcome { return outcome{session: time.Since(t0), err: err} }
	c, err := net.DialTimeout("tcp", target, 30*time.Second)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	dial := time.Since(t0)
	fail = func(err error) outcome { return outcome{session: time.Since(t0), dial: dial, err: err} }
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return fail(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fail(err)
	}
	if string(got) != string(msg) {
		return fail(errors.New("mismatch"))
	}
	return outcome{session: time.Since(t0), dial: dial}
}

// openLoop starts n sessions evenly over span (client i at i·span/n), each
// in its own goroutine, and waits for all.
func openLoop(target string, n int, span time.Duration) []outcome {
	out := make([]outcome, n)
	var wg sync.WaitGroup
	start := time.Now()
	msg := []byte(strings.Repeat("x", 64))
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * span / time.Duration(n))); span > 0 && d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = oneSession(target, msg)
		}()
	}
	wg.Wait()
	return out
}

type summary struct {
	n, failed      int
	dialP50        time.Duration // client connect (handshake done) of the sessions that succeeded
	dialP99        time.Duration
	p50, p99       time.Duration // sessions that succeeded
	allP50, allP99 time.Duration // every client, a failed one at the time it failed
	kinds          map[string]int
}

func summarize(out []outcome) summary {
	s := summary{n: len(out), kinds: map[string]int{}}
	var d, all, dial []time.Duration
	for _, o := range out {
		all = append(all, o.session)
		if o.err != nil {
			s.failed++
			s.kinds[kind(o.err)]++
			continue
		}
		d = append(d, o.session)
		dial = append(dial, o.dial)
	}
	s.p50, s.p99 = pct(d)
	s.dialP50, s.dialP99 = pct(dial)
	s.allP50, s.allP99 = pct(all)
	return s
}

func pct(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[min(len(d)-1, len(d)*99/100)]
}

func kind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

func (s summary) String() string {
	k := ""
	for _, name := range []string{"refused", "reset", "eof", "timeout", "other"} {
		if s.kinds[name] > 0 {
			k += fmt.Sprintf(" %s=%d", name, s.kinds[name])
		}
	}
	return fmt.Sprintf("%5d clients %4d failed%-16s ok p50 %8s p99 %8s | all p50 %8s p99 %8s", s.n, s.failed, k, ms(s.p50), ms(s.p99), ms(s.allP50), ms(s.allP99))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }

// --- systems ---------------------------------------------------------------

type system struct {
	name   string
	target string
	admin  string // relayd: its admin address, for /metrics
	cmd    *exec.Cmd
}

// cpu is the system's user+system CPU time so far (0 for direct).
func (s *system) cpu() time.Duration {
	if s.cmd == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}

func (s *system) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		die(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(addr string) {
	for range 200 {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	die(fmt.Errorf("nothing listens on %s", addr))
}

// listenerSpec is one relayd listener: its upstream.
type listenerSpec struct{ name, upstream string }

// startRelayd runs relayd with connector settings extra (YAML under
// connector:) and one listener per spec; it returns one system per
// listener, sharing the process (stop the first).
func startRelayd(name, connector string, specs ...listenerSpec) []*system {
	admin := freePort()
	var b strings.Builder
	b.WriteString("listeners:\n")
	var out []*system
	for _, l := range specs {
		addr := freePort()
		fmt.Fprintf(&b, "  - name: %s\n    listen: %s\n    upstreams: [%s]\n", l.name, addr, l.upstream)
		out = append(out, &system{name: name, target: addr, admin: admin})
	}
	fmt.Fprintf(&b, "connector:\n%s\nadmin:\n  listen: %s\nlog:\n  output: %s\n", connector, admin, filepath.Join(tmp, name+".log"))
	return launch(out, name+".yaml", b.String(), *relaydBin, "serve", "-c")
}

// launch writes the config file cfgName with text, runs argv with the
// file's path appended, and waits until every system's target listens; the
// first system owns the process.
func launch(out []*system, cfgName, text string, argv ...string) []*system {
	cfg := filepath.Join(tmp, cfgName)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		die(err)
	}
	cmd := exec.Command(argv[0], append(argv[1:], cfg)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		die(err)
	}
	out[0].cmd = cmd
	for _, s := range out {
		waitListening(s.target)
	}
	return out
}

func startHAProxy(upstream string) *system {
	if s := startHAProxyMulti("timeout connect 5s\n    retries 3", upstream); s != nil {
		return s[0]
	}
	return nil
}

// startHAProxyMulti runs HAProxy with one frontend and backend per upstream
// (defaults extra: e.g. its connect timeout and retries); one system per
// frontend, sharing the process (stop the first). nil without haproxy.
func startHAProxyMulti(extra string, upstreams ...string) []*system {
	if _, err := exec.LookPath(*haproxy); err != nil {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    nbthread 2\n    maxconn 9000\ndefaults\n    mode tcp\n    %s\n    timeout client 60s\n    timeout server 60s\n    maxconn 9000\n", extra)
	var out []*system
	for i, up := range upstreams {
		addr := freePort()
		fmt.Fprintf(&b, "frontend fe%d\n    bind %s\n    default_backend be%d\nbackend be%d\n    server up %s\n", i, addr, i, i, up)
		out = append(out, &system{name: "haproxy", target: addr})
	}
	return launch(out, "haproxy.cfg", b.String(), *haproxy, "-db", "-f")
}

// metrics returns the relayd /metrics lines that start with prefix.
func metrics(admin, prefix string) []string {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// metricValue is the value of the first line that starts with prefix.
func metricValue(admin, prefix string) float64 {
	for _, l := range metrics(admin, prefix) {
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		return v
	}
	return -1
}

// buckets renders a relayd histogram's non-empty buckets (name is the
// _bucket series) as "≤bound:count …", counts per bucket, not cumulative.
func buckets(admin, name string) string {
	var hist []string
	prev := 0.0
	for _, l := range metrics(admin, name) {
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		if v > prev {
			le := l[strings.Index(l, `le="`)+4:]
			hist = append(hist, fmt.Sprintf("≤%s:%0.f", le[:strings.IndexByte(le, '"')], v-prev))
		}
		prev = v
	}
	return strings.Join(hist, " ")
}

// connectModes reads relayd's upstream connect latency histogram: the
// connects that took < 1 s and ≥ 1 s (a retransmitted SYN), and the late
// (lost SYN) count.
func connectModes(admin string) string {
	var below, total float64
	if *verbose {
		fmt.Println("   connect latency buckets:", buckets(admin, "relayd_upstream_connect_latency_seconds_bucket"))
	}
	for _, l := range metrics(admin, "relayd_upstream_connect_latency_seconds_") {
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.Contains(l, `le="0.524288"`):
			below = v
		case strings.HasPrefix(l, "relayd_upstream_connect_latency_seconds_count"):
			total = v
		}
	}
	late := metricValue(admin, "relayd_upstream_late_total")
	limit := metricValue(admin, "relayd_upstream_limit")
	rate := metricValue(admin, "relayd_upstream_rate_limit")
	return fmt.Sprintf("connects %0.f: ≤0.52 s %0.f, >0.52 s %0.f; lost SYNs %0.f; limit now %0.f, rate %0.f/s", total, below, total-below, late, limit, rate)
}

// --- scenarios -------------------------------------------------------------

func storm() {
	fmt.Printf("\n## storm: %d clients at once (spread over %v), upstream backlog %d, 64-byte echo each\n\n", *stormN, *stormSpan, *stormBack)
	variants := []variant{
		{"direct", ""},
		{"haproxy", ""},
		{"relayd-adaptive", "  pacing: adaptive"},
		{"relayd-fixed-1", "  pacing: fixed\n  upstream_max_inflight: 1"},
		{"relayd-fixed-8", "  pacing: fixed\n  upstream_max_inflight: 8"},
		{"relayd-fixed-64", "  pacing: fixed\n  upstream_max_inflight: 64\n  max_inflight: 32"},
	}
	alternate(variants, func(_ int, v variant) {
		up := spawnUpstream(*stormBack)
		var sys *system
		switch {
		case v.name == "direct":
			sys = &system{name: "direct", target: up.addr}
		case v.name == "haproxy":
			if sys = startHAProxy(up.addr); sys == nil {
				fmt.Printf("%-16s (haproxy not installed)\n", v.name)
				up.close()
				return
			}
		default:
			sys = startRelayd(v.name, v.connector, listenerSpec{"storm", up.addr})[0]
		}
		var series func() string
		if *verbose && sys.admin != "" {
			series = sample(sys.admin, 100*time.Millisecond)
		}
		cpu0 := sys.cpu()
		s := summarize(openLoop(sys.target, *stormN, *stormSpan))
		cpu := sys.cpu() - cpu0
		if series != nil {
			fmt.Println(series())
		}
		extra := ""
		if sys.admin != "" {
			extra = "  " + connectModes(sys.admin)
		}
		fmt.Printf("%-16s %s%s\n", v.name, s, extra)
		if *verbose {
			fmt.Printf("   client connect p50 %s p99 %s; proxy CPU %s\n", ms(s.dialP50), ms(s.dialP99), ms(cpu))
			if sys.admin != "" {
				fmt.Println("   submit-to-connected:", buckets(sys.admin, "relayd_connector_latency_seconds_bucket"))
			}
		}
		sys.stop()
		up.close()
	})
}

func isolation() {
	fmt.Printf("\n## isolation: blackholed upstream 400 sessions at 100/s beside a healthy one at 50/s (connect_timeout 2s)\n\n")
	good := spawnUpstream(4096)
	defer good.close()
	hole := newUpstream(1, true)
	run := func(withHole bool, label string, start func() []*system) {
		sys := start()
		if sys == nil {
			fmt.Printf("%-30s (not installed)\n", label)
			return
		}
		defer sys[0].stop()
		var holeOut []outcome
		var wg sync.WaitGroup
		if withHole {
			wg.Add(1)
			go func() {
				defer wg.Done()
				holeOut = openLoop(sys[1].target, 400, 4*time.Second)
			}()
		}
		healthy := summarize(openLoop(sys[0].target, 250, 5*time.Second))
		wg.Wait()
		fmt.Printf("%-30s %s\n", label, healthy)
		if *verbose && sys[0].admin != "" {
			fmt.Println("   healthy submit-to-connected:", buckets(sys[0].admin, "relayd_connector_latency_seconds_bucket"))
		}
		if withHole {
			// Blackholed sessions end when the proxy gives up: their close
			// times, against the connect timeout (2 s).
			var d []time.Duration
			for _, o := range holeOut {
				d = append(d, o.session)
			}
			slices.Sort(d)
			h := summarize(holeOut)
			reasons := ""
			if sys[0].admin != "" {
				reasons = fmt.Sprintf("; upstreams_down %0.f, connect_timeout %0.f",
					metricValue(sys[0].admin, `relayd_listener_sessions_closed_total{listener="hole",reason="upstreams_down"}`),
					metricValue(sys[0].admin, `relayd_listener_sessions_closed_total{listener="hole",reason="connect_timeout"}`))
			}
			fmt.Printf("%-30s %d sessions, %d failed; closed after min %s p50 %s max %s%s\n",
				"  blackholed", len(holeOut), h.failed, ms(d[0]), ms(d[len(d)/2]), ms(d[len(d)-1]), reasons)
		}
	}
	relayd := func(cfg string) func() []*system {
		return func() []*system {
			return startRelayd("relayd-isolation", cfg, listenerSpec{"healthy", good.addr}, listenerSpec{"hole", hole.addr})
		}
	}
	// HAProxy like relayd here: a 2 s connect timeout and no retry (one
	// server per backend), no health checks.
	hap := func() []*system { return startHAProxyMulti("timeout connect 2s\n    retries 0", good.addr, hole.addr) }
	const base = "  connect_timeout: 2s"
	for r := range *rounds {
		fmt.Printf("round %d\n", r+1)
		run(false, "relayd: healthy alone", relayd(base))
		run(true, "relayd: healthy beside hole", relayd(base))
		run(true, "relayd, no health: beside hole", relayd(base+"\n  health:\n    fail_after: 0"))
		run(false, "haproxy: healthy alone", hap)
		run(true, "haproxy: healthy beside hole", hap)
	}
}

// sample reads relayd's pacing series from /metrics every period until the
// returned function is called; that returns them, one line per sample.
func sample(admin string, period time.Duration) func() string {
	var stop atomic.Bool
	var samples []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t0 := time.Now()
		for !stop.Load() {
			samples = append(samples, fmt.Sprintf("%4.1fs window %2.0f  rate %5.0f/s  queued %4.0f  lost SYNs %5.0f  connected %6.0f", time.Since(t0).Seconds(),
				metricValue(admin, "relayd_upstream_limit"), metricValue(admin, "relayd_upstream_rate_limit"),
				metricValue(admin, "relayd_upstream_queued"),
				metricValue(admin, "relayd_upstream_late_total"), metricValue(admin, "relayd_upstream_connected_total")))
			time.Sleep(period)
		}
	}()
	return func() string {
		stop.Store(true)
		wg.Wait()
		return strings.Join(samples, "\n")
	}
}

func growth() {
	const rate, dur = 3000, 10 * time.Second
	fmt.Printf("\n## growth: %d sessions/s for %v into backlog 8, grown to 4096 at %v; relayd adaptive limit over time\n\n", rate, dur, dur/2)
	up := spawnUpstream(8)
	defer up.close()
	sys := startRelayd("relayd-growth", "  pacing: adaptive", listenerSpec{"growth", up.addr})[0]
	defer sys.stop()
	stop := sample(sys.admin, 500*time.Millisecond)
	go func() {
		time.Sleep(dur / 2)
		up.setBacklog(4096)
	}()
	s := summarize(openLoop(sys.target, int(rate*dur/time.Second), dur))
	samples := stop()
	fmt.Printf("%-16s %s  %s\n", "relayd-adaptive", s, connectModes(sys.admin))
	fmt.Println(samples)
}

func rr() {
	fmt.Printf("\n## rr: fast upstream, 50 workers connect/echo 64 B/close for %v each\n\n", *rrDur)
	up := spawnUpstream(4096)
	defer up.close()
	variants := []variant{
		{"relayd-adaptive", "  pacing: adaptive"},
		{"relayd-fixed-1", "  pacing: fixed\n  upstream_max_inflight: 1"},
		{"relayd-fixed-8", "  pacing: fixed\n  upstream_max_inflight: 8"},
		{"relayd-fixed-32", "  pacing: fixed\n  upstream_max_inflight: 32"},
	}
	res := map[string][]float64{}
	alternate(variants, func(r int, v variant) {
		sys := startRelayd(v.name, v.connector, listenerSpec{"rr", up.addr})[0]
		var n, failed atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(*rrDur)
		msg := []byte(strings.Repeat("y", 64))
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if o := oneSession(sys.target, msg); o.err != nil {
						failed.Add(1)
					} else {
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		rate := float64(n.Load()) / rrDur.Seconds()
		res[v.name] = append(res[v.name], rate)
		fmt.Printf("%-16s round %d  %8.0f sessions/s  %d failed  limit now %0.f\n", v.name, r+1, rate, failed.Load(),
			metricValue(sys.admin, "relayd_upstream_limit"))
		sys.stop()
	})
	best, bestName := 0.0, ""
	for _, v := range variants[1:] {
		if m := mean(res[v.name]); m > best {
			best, bestName = m, v.name
		}
	}
	fmt.Printf("adaptive / best fixed (%s): %.3f\n", bestName, mean(res["relayd-adaptive"])/best)
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(max(1, len(xs)))
}

func wanted(name string) bool {
	return *only == "" || slices.Contains(strings.Split(*only, ","), name)
}

// variant is one system of a scenario: a name, and relayd's connector
// settings (YAML under connector:) when it is a relayd.
type variant struct{ name, connector string }

// alternate runs fn for every wanted variant, -rounds times, every other
// round in reverse order, so that neither order nor warm-up favours one.
func alternate(variants []variant, fn func(round int, v variant)) {
	for r := range *rounds {
		order := slices.Clone(variants)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			if wanted(v.name) {
				fn(r, v)
			}
		}
	}
}
