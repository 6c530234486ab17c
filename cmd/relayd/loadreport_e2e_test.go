package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/relayd/relayd/internal/testbrowser"
	"github.com/relayd/relayd/loadtest"
	"github.com/relayd/relayd/loadtest/report"
)

// sinkProc runs `relayd sink` (echo) in its own process and returns its
// address; cleanup stops it.
func sinkProc(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(relaydBin, append([]string{"sink", "--listen", "127.0.0.1:0"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	if sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 3 && f[0] == "sink" {
			go func() { // drain the rest (the counters at exit)
				for sc.Scan() {
				}
			}()
			return f[3]
		}
	}
	t.Fatalf("no sink address: %q", sc.Text())
	return ""
}

// loadRun runs `relayd load ARGS --json` and returns the parsed result
// and the exit error (nil for exit 0).
func loadRun(t *testing.T, args ...string) (*loadtest.Result, string, error) {
	t.Helper()
	cmd := exec.Command(relaydBin, append(append([]string{"load"}, args...), "--json", "--progress", "off")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	res, perr := loadtest.ParseResult(bytes.TrimSpace(out))
	if perr != nil {
		t.Fatalf("load %v: %v (%v)\nstdout %s\nstderr %s", args, perr, err, out, stderr.String())
	}
	return res, stderr.String(), err
}

// recordHists builds, from a record file, the histograms the load tool
// keeps, value for value as it records them.
func recordHists(t *testing.T, paths ...string) (map[string]*hdrhistogram.Histogram, uint64, map[int]bool) {
	t.Helper()
	hs := map[string]*hdrhistogram.Histogram{}
	for _, n := range []string{"latency", "connect", "rtt"} {
		hs[n] = hdrhistogram.New(1e3, int64(5*time.Minute), 3)
	}
	clamp := func(d time.Duration) int64 { return min(max(int64(d), 1e3), int64(5*time.Minute)) }
	var n uint64
	procs := map[int]bool{}
	for _, p := range paths {
		err := loadtest.ReadRecords(p, func(h *loadtest.RecordHeader, s *loadtest.SessionRecord) error {
			n++
			procs[h.Proc] = true
			_ = hs["latency"].RecordValue(clamp(s.Latency()))
			if s.Connect > 0 {
				_ = hs["connect"].RecordValue(clamp(s.Connect))
			}
			if s.RTT > 0 {
				_ = hs["rtt"].RecordValue(clamp(s.RTT))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return hs, n, procs
}

func samePercentiles(t *testing.T, what string, got loadtest.Percentiles, h *hdrhistogram.Histogram) {
	t.Helper()
	q := func(p float64) time.Duration { return time.Duration(h.ValueAtQuantile(p)) }
	want := loadtest.Percentiles{Count: h.TotalCount(), P50: q(50), P90: q(90), P99: q(99), P999: q(99.9), Max: time.Duration(h.Max())}
	if got != want {
		t.Fatalf("%s: merged %+v, one histogram over the records %+v", what, got, want)
	}
}

// Runs over several processes, and runs merged afterwards with `relayd load
// merge`, give exactly the counts and percentiles (at HdrHistogram's
// precision) of one histogram over every session's record; the record
// file holds every session in under 40 bytes each.
func TestLoadRecordsMergeExact(t *testing.T) {
	sink := sinkProc(t)
	dir := t.TempDir()
	rx, jx := filepath.Join(dir, "x.rec"), filepath.Join(dir, "x.json")
	res, stderr, err := loadRun(t, "--target", sink, "--procs", "3", "--sessions", "3000", "--concurrency", "12", "--record", rx)
	if err != nil || res.ErrorsTotal != 0 || res.Attempts != 3000 || res.Procs != 3 {
		t.Fatalf("load --procs 3: %v, %d errors, %d attempts, %d procs\n%s", err, res.ErrorsTotal, res.Attempts, res.Procs, stderr)
	}
	b, _ := res.JSON()
	_ = os.WriteFile(jx, b, 0o600)
	hs, n, procs := recordHists(t, rx)
	if n != res.Attempts || len(procs) != 3 {
		t.Fatalf("%d records from processes %v, the run had %d sessions over 3", n, procs, res.Attempts)
	}
	samePercentiles(t, "latency", res.Latency, hs["latency"])
	samePercentiles(t, "connect", res.Connect, hs["connect"])
	samePercentiles(t, "rtt", res.RTT, hs["rtt"])
	fi, _ := os.Stat(rx)
	if per := float64(fi.Size()) / float64(n); per > 40 {
		t.Fatalf("%.1f bytes per session recorded", per)
	}
	for i := range 3 {
		if _, err := os.Stat(fmt.Sprintf("%s.%d", rx, i)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("child part %d left behind: %v", i, err)
		}
	}

	// A second run, on its own, then both merged by the command.
	ry, jy := filepath.Join(dir, "y.rec"), filepath.Join(dir, "y.json")
	resY, _, err := loadRun(t, "--target", sink, "--sessions", "1000", "--concurrency", "5", "--record", ry)
	if err != nil || resY.ErrorsTotal != 0 {
		t.Fatalf("second run: %v %d errors", err, resY.ErrorsTotal)
	}
	b, _ = resY.JSON()
	_ = os.WriteFile(jy, b, 0o600)
	out, err := exec.Command(relaydBin, "load", "merge", jx, jy).Output()
	if err != nil {
		t.Fatalf("load merge: %v", err)
	}
	m, err := loadtest.ParseResult(bytes.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	hs, n, _ = recordHists(t, rx, ry)
	if m.Attempts != n || m.Sessions != 4000 || m.Procs != 4 {
		t.Fatalf("merged: %d attempts %d sessions %d procs; records %d", m.Attempts, m.Sessions, m.Procs, n)
	}
	samePercentiles(t, "merged latency", m.Latency, hs["latency"])
	samePercentiles(t, "merged rtt", m.RTT, hs["rtt"])
	rm := filepath.Join(dir, "m.rec")
	if out, err := exec.Command(relaydBin, "load", "merge", "-o", rm, rx, ry).CombinedOutput(); err != nil {
		t.Fatalf("load merge records: %v %s", err, out)
	}
	if _, n2, _ := recordHists(t, rm); n2 != n {
		t.Fatalf("merged record file holds %d sessions, want %d", n2, n)
	}
}

// Bad input gets a clear one-line error and a non-zero exit: unreadable,
// truncated and foreign files, runs that cannot merge, a rate the run
// cannot reach.
func TestLoadToolBadInput(t *testing.T) {
	sink := sinkProc(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "r.rec")
	rr, _, err := loadRun(t, "--target", sink, "--sessions", "200", "--record", rec)
	if err != nil {
		t.Fatal(err)
	}
	storm, _, err := loadRun(t, "--target", sink, "--mode", "storm", "--sessions", "50")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b1, _ := rr.JSON()
	b2, _ := storm.JSON()
	rrJSON, stormJSON := write("rr.json", b1), write("storm.json", b2)
	raw, _ := os.ReadFile(rec)
	cut := write("cut.rec", raw[:len(raw)*2/3])
	junk := write("junk.bin", []byte("\x00\x01 not a run at all"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "report", cut}, "truncated"},
		{[]string{"load", "report", junk}, "neither a record file nor a JSON result"},
		{[]string{"load", "report", filepath.Join(dir, "missing.rec")}, "no such file"},
		{[]string{"load", "report", dir}, "is a directory"},
		{[]string{"load", "merge", rrJSON, stormJSON}, "merging a storm run with a rr run"},
		{[]string{"load", "merge", rrJSON, rec}, "not both"},
		{[]string{"load", "merge", "-o", filepath.Join(dir, "o.rec"), rec, cut}, "truncated"},
		{[]string{"load", "--target", sink, "--rate", "1000000", "--sessions", "3000", "--concurrency", "2"}, "rate not reached"},
		{[]string{"load", "--target", sink, "--rate", "100", "--mode", "bulk"}, "open-loop load is for rr and storm"},
	} {
		out, err := exec.Command(relaydBin, c.args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("%v: exit %v, want non-zero\n%s", c.args, err, out)
		}
		last := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if !strings.Contains(last, c.want) {
			t.Fatalf("%v: last line %q, want it to say %q\n%s", c.args, last, c.want, out)
		}
	}
}

// stallRun runs an rr load through relayd while the test stops relayd
// (SIGSTOP) for stall once the first interval report is out, and returns
// the result, the record file and the wall times of the stop and the
// continue.
func stallRun(t *testing.T, relayd *child, stall time.Duration, name string, args ...string) (*loadtest.Result, string, time.Time, time.Time) {
	t.Helper()
	dir := t.TempDir()
	rec, ivs := filepath.Join(dir, name+".rec"), filepath.Join(dir, name+".intervals")
	cmd := exec.Command(relaydBin, append([]string{"load", "--target", relayd.addr, "--duration", "5s", "--record", rec,
		"--json-intervals", ivs, "--json", "--progress", "off", "--max-errors", "0"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	waitFor(t, 20*time.Second, "the first interval report", func() bool {
		b, _ := os.ReadFile(ivs)
		return bytes.Count(b, []byte("\n")) >= 1
	})
	pid := relayd.cmd.Process.Pid
	stopped := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stall's length is the stimulus itself, not a wait for an event.
	<-time.After(stall)
	resumed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: load: %v\n%s", name, err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: load did not end", name)
	}
	res, err := loadtest.ParseResult(bytes.TrimSpace(stdout.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return res, rec, stopped, resumed
}

// An induced stall: relayd stopped for 2 s under an open-loop load of
// 300 sessions/s. Every session due during the stall ends only after it,
// so its latency — counted from when it was due — is at least the rest of
// the stall, and the p99 shows it; a closed-loop run through the same stall
// has only its few in-flight sessions slowed (coordinated omission). Both
// runs in one report, opened in a real browser.
func TestOpenLoopStallReport(t *testing.T) {
	sink := sinkProc(t)
	relayd := startRelayd(t, configYAML(sink, ""), "")
	// 300/s: kept by a -race build on a loaded 2-core machine (such a run
	// started 1,228/s at most), so the schedule is never what fails.
	const rate, stall = 300, 2 * time.Second
	open, openRec, stopped, resumed := stallRun(t, relayd, stall, "open", "--rate", strconv.Itoa(rate))
	if open.ErrorsTotal != 0 || open.RateShortfall != "" {
		t.Fatalf("open loop: %d errors, shortfall %q", open.ErrorsTotal, open.RateShortfall)
	}
	var during, slow int
	var base int64
	err := loadtest.ReadRecords(openRec, func(h *loadtest.RecordHeader, s *loadtest.SessionRecord) error {
		base = h.BaseUnixNano
		due := time.Unix(0, h.BaseUnixNano).Add(s.Start)
		if due.After(stopped.Add(20*time.Millisecond)) && due.Before(resumed.Add(-20*time.Millisecond)) {
			during++
			if least := resumed.Sub(due) - time.Millisecond; s.Latency() < least {
				return fmt.Errorf("a session due %v into the stall ended after %v, before relayd was resumed (%v later)",
					due.Sub(stopped), s.Latency(), resumed.Sub(due))
			}
		}
		if s.Latency() >= time.Second {
			slow++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Unix(0, base).Add(5 * time.Second)
	last := resumed
	if end.Before(last) {
		last = end
	}
	window := last.Sub(stopped) - 40*time.Millisecond
	if want := int(0.9 * rate * window.Seconds()); during < want {
		t.Fatalf("%d sessions due during the %v stall, want at least %d", during, window, want)
	}
	if open.Latency.P99 < time.Second {
		t.Fatalf("open loop p99 %v: the stall is missing from it", open.Latency.P99)
	}

	const conc = 4
	closed, closedRec, _, _ := stallRun(t, relayd, stall, "closed", "--concurrency", strconv.Itoa(conc))
	var closedSlow int
	_ = loadtest.ReadRecords(closedRec, func(_ *loadtest.RecordHeader, s *loadtest.SessionRecord) error {
		if s.Latency() >= time.Second {
			closedSlow++
		}
		return nil
	})
	if closedSlow > conc {
		t.Fatalf("closed loop: %d sessions slower than 1s, at most %d were in flight", closedSlow, conc)
	}
	t.Logf("stall %v: open loop %d sessions, %d due during it, %d ≥ 1s, p99 %v; closed loop %d sessions, %d ≥ 1s, p99 %v",
		stall, open.Sessions, during, slow, open.Latency.P99, closed.Sessions, closedSlow, closed.Latency.P99)

	page := filepath.Join(t.TempDir(), "stall.html")
	if out, err := exec.Command(relaydBin, "load", "report", "-o", page, "open-loop="+openRec, "closed-loop="+closedRec).CombinedOutput(); err != nil {
		t.Fatalf("load report: %v %s", err, out)
	}
	runs, err := report.LoadAll([]string{"open-loop=" + openRec, "closed-loop=" + closedRec}, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkReportPage(t, page, runs)
}

// checkReportPage opens a report in headless Chromium: it loads without
// errors, fetches nothing but itself, and draws one line a run in the
// spectrum and the rate chart, one latency-over-time chart a run with a
// point per session (or a heat map for big runs), and one summary row a run.
func checkReportPage(t *testing.T, path string, runs []*report.Run) {
	t.Helper()
	u := (&url.URL{Scheme: "file", Path: path}).String()
	p := testbrowser.Open(t, u)
	if pr := p.Problems(); len(pr) > 0 {
		t.Fatalf("the page reported problems: %q", pr)
	}
	if rq := p.Requests(); len(rq) != 1 || rq[0] != u {
		t.Fatalf("the page made requests %q, want only itself", rq)
	}
	n := len(runs)
	for sel, want := range map[string]int{
		"#summary tr.run":              n,
		"svg.spectrum polyline.series": n,
		"svg.rates polyline.rate":      n,
		"svg.overtime":                 n,
		"section.run":                  n,
	} {
		if got := p.Count(t, sel); got != want {
			t.Fatalf("%s: %d elements, want %d", sel, got, want)
		}
	}
	for i, r := range runs {
		js := fmt.Sprintf(`document.querySelectorAll("section.run")[%d].querySelectorAll("svg.overtime circle.pt").length`, i)
		cells := fmt.Sprintf(`document.querySelectorAll("section.run")[%d].querySelectorAll("svg.overtime rect.cell").length`, i)
		switch {
		case r.Points != nil:
			if got := testbrowser.Eval[int](t, p, js); got != len(r.Points) {
				t.Fatalf("run %s: %d points drawn, %d sessions", r.Name, got, len(r.Points))
			}
		default:
			if got := testbrowser.Eval[int](t, p, cells); got == 0 {
				t.Fatalf("run %s: an empty heat map", r.Name)
			}
		}
		pts := testbrowser.Eval[int](t, p, fmt.Sprintf(`+document.querySelectorAll("svg.spectrum polyline.series")[%d].dataset.points`, i))
		if pts < 20 {
			t.Fatalf("run %s: spectrum of %d points", r.Name, pts)
		}
	}
}

// compare.sh writes one HTML report of every system it ran, and the page
// opens cleanly in a real browser with one line a run. A short run of
// three systems (direct, HAProxy, relayd); it needs root (compare.sh
// installs what is missing with apt), jq and HAProxy.
func TestCompareReport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("compare.sh runs as root")
	}
	for _, bin := range []string{"jq", "haproxy"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	page := filepath.Join(t.TempDir(), "compare.html")
	cmd := exec.Command("bash", "../../loadtest/compare.sh")
	cmd.Env = append(os.Environ(), "SYSTEMS=direct haproxy relayd", "RR_DUR=1s", "KA_DUR=1s", "BULK_DUR=1s",
		"IDLE_SESSIONS=200", "ROUNDS=1", "SYSCALL_SESSIONS=0", "REPORT="+page)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("compare.sh did not finish in 5 minutes\n%s", out)
	}
	if err != nil {
		t.Fatalf("compare.sh: %v\n%s", err, out)
	}
	var args []string
	for _, s := range []string{"direct", "haproxy", "relayd"} {
		args = append(args, s+"-rr", s+"-ka")
	}
	p := testbrowser.Open(t, (&url.URL{Scheme: "file", Path: page}).String())
	if pr := p.Problems(); len(pr) > 0 {
		t.Fatalf("the page reported problems: %q", pr)
	}
	if got := p.Count(t, "svg.spectrum polyline.series"); got != len(args) {
		t.Fatalf("%d spectrum lines, want %d (rr and ka of three systems)\n%s", got, len(args), out)
	}
	names := testbrowser.Eval[[]string](t, p, `[...document.querySelectorAll("svg.spectrum polyline.series")].map(e => e.dataset.run)`)
	for _, want := range args {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Fatalf("no run %q in the report: %q", want, names)
		}
	}
	if got := p.Count(t, "table.slowest"); got != 3 {
		t.Fatalf("%d slowest-session tables, want 3 (the recorded rr runs)", got)
	}
}
