package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoadCommandJSON(t *testing.T) {
	s := startSink(t, SinkEcho)
	cmd := LoadCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--target", s.Addr(), "--mode", "rr", "--sessions", "100", "--concurrency", "5", "--json", "--max-errors", "0"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("load: %v\n%s", err, out.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("json: %v: %q", err, out.String())
	}
	for _, k := range []string{"mode", "target", "sessions", "attempts", "errors", "errors_total", "elapsed_s",
		"sessions_per_sec", "bytes_sent", "bytes_received", "bytes_per_sec", "bits_per_sec",
		"connect", "ttfb", "rtt", "max_inflight_connects_seen"} {
		if _, ok := m[k]; !ok {
			t.Errorf("json lacks %q: %s", k, out.String())
		}
	}
	if m["mode"] != "rr" || m["sessions"] != 100.0 || m["bytes_sent"] != 6400.0 || m["errors_total"] != 0.0 {
		t.Errorf("json values: %s", out.String())
	}
	errs := m["errors"].(map[string]any)
	for _, k := range ErrorKinds {
		if errs[k] != 0.0 {
			t.Errorf("errors[%q] = %v", k, errs[k])
		}
	}
	for _, h := range []string{"connect", "ttfb", "rtt"} {
		p := m[h].(map[string]any)
		for _, k := range []string{"count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"} {
			if _, ok := p[k]; !ok {
				t.Errorf("%s lacks %q", h, k)
			}
		}
		if p["count"] != 100.0 || p["p50_us"].(float64) <= 0 {
			t.Errorf("%s = %v", h, p)
		}
	}
}

func TestLoadCommandIdleJSON(t *testing.T) {
	s := startSink(t, SinkEcho)
	cmd := LoadCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--target", s.Addr(), "--mode", "idle", "--sessions", "50", "--json", "--pid", "1," + strconv.Itoa(os.Getpid())})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("load: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"idle_open_s", "self_rss_before_bytes", "self_rss_after_bytes", "self_rss_per_session_bytes",
		"target_pid", "target_rss_before_bytes", "target_rss_after_bytes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("idle json lacks %q: %s", k, out.String())
		}
	}
	// Two PIDs: the target RSS is the sum, so it exceeds our own.
	if pids, _ := m["target_pids"].([]any); len(pids) != 2 || m["target_rss_after_bytes"].(float64) <= m["self_rss_after_bytes"].(float64) {
		t.Errorf("target pids %v rss %v vs self %v", m["target_pids"], m["target_rss_after_bytes"], m["self_rss_after_bytes"])
	}
}

func TestLoadCommandThresholds(t *testing.T) {
	refused := freePort(t)
	s := startSink(t, SinkEcho)
	for _, tc := range []struct {
		name   string
		args   []string
		breach bool
	}{
		{"errors-breached", []string{"--target", refused, "--sessions", "3", "--max-errors", "2"}, true},
		{"errors-within", []string{"--target", refused, "--sessions", "3", "--max-errors", "3"}, false},
		{"errors-default", []string{"--target", refused, "--sessions", "3"}, true}, // any failure fails the run
		{"errors-off", []string{"--target", refused, "--sessions", "3", "--max-errors", "-1"}, false},
		{"bulk-moved-nothing", []string{"--target", startSink(t, SinkDiscard).Addr(), "--mode", "bulk", "--direction", "down", "--duration", "300ms"}, true},
		{"p99-breached", []string{"--target", s.Addr(), "--sessions", "20", "--max-p99", "1ns"}, true},
		{"p99-within", []string{"--target", s.Addr(), "--sessions", "20", "--max-p99", "1h"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := LoadCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(tc.args)
			err := cmd.ExecuteContext(context.Background())
			if got := errors.Is(err, ErrThreshold); got != tc.breach || (!tc.breach && err != nil) {
				t.Fatalf("err = %v, want breach=%v\n%s", err, tc.breach, out.String())
			}
			if !strings.Contains(out.String(), "sessions") {
				t.Fatalf("no summary: %q", out.String())
			}
		})
	}
}

func TestSinkCommand(t *testing.T) {
	cmd := SinkCommand()
	pr, pw := io.Pipe()
	cmd.SetOut(pw)
	cmd.SetArgs([]string{"--listen", "127.0.0.1:0", "--mode", "echo", "--loops", "1"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()
	br := bufio.NewReader(pr)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(line) // sink listening on ADDR mode echo
	if len(f) != 6 || f[0] != "sink" {
		t.Fatalf("banner line %q", line)
	}
	res := run(t, LoadConfig{Target: f[3], Sessions: 10, Concurrency: 2})
	noErrors(t, res)
	cancel()
	rest, _ := io.ReadAll(br)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(rest)); got != "accepted 10 closed 10 bytes_in 640 bytes_out 640" {
		t.Fatalf("exit counters %q", got)
	}
}
