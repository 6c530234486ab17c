package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/logging"
)

// recorder is a zapcore.WriteSyncer that keeps what the logger wrote.
type recorder struct{ buf lockedBuf }

func (r *recorder) Write(p []byte) (int, error) { return r.buf.Write(p) }
func (r *recorder) Sync() error                 { return nil }

// inProcess starts a daemon from yaml in this process, logging to rec.
func inProcess(t *testing.T, yaml string) (*daemon, *recorder, *logging.Logger) {
	t.Helper()
	cfg := loadYAML(t, yaml)
	rec := &recorder{}
	lg, err := logging.NewWithWriter(loggingConfig(cfg), zapcore.AddSync(rec))
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDaemon(cfg, lg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = lg.Close(ctx)
	})
	return d, rec, lg
}

func loadYAML(t *testing.T, yaml string) *configs.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "relayd.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(configs.LoadOptions{File: f})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func twoListeners(up, b string) string {
	return `listeners:
  - name: a
    listen: 127.0.0.1:0
    upstreams: [` + up + `]
  - name: b
    listen: ` + b + `
    upstreams: [` + up + `]
relay:
  loops: 2
admin:
  listen: ""
`
}

// Review C5: a reload that fails halfway (listener a added, b's address
// taken) leaves d.cfg saying what runs, so the next reload, with b on a free
// address, succeeds instead of failing with `listener "a" exists`.
func TestReloadFailedHalfwayDoesNotWedge(t *testing.T) {
	up := echoServer(t).Addr().String()
	d, _, _ := inProcess(t, configYAML(up, ""))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := d.reload(loadYAML(t, twoListeners(up, taken.Addr().String()))); err == nil {
		t.Fatal("reload onto a taken address succeeded")
	}
	if _, ok := d.relay.Addrs()["a"]; !ok {
		t.Fatal("listener a was not added by the first half of the reload")
	}
	if err := d.reload(loadYAML(t, twoListeners(up, "127.0.0.1:0"))); err != nil {
		t.Fatalf("the next reload: %v", err)
	}
	addrs := d.relay.Addrs()
	for _, name := range []string{"a", "b"} {
		c, err := net.DialTimeout("tcp", addrs[name].String(), 5*time.Second)
		if err != nil {
			t.Fatalf("listener %s: %v", name, err)
		}
		err = roundTrip(c, "after the reload")
		c.Close()
		if err != nil {
			t.Fatalf("listener %s: %v", name, err)
		}
	}
	if _, ok := addrs["e2e"]; ok {
		t.Fatal("listener e2e should have been removed")
	}
}

// A restart-only key changed by a reload is named once; reverting the file to
// the running value is no change and warns nothing.
func TestReloadRevertedRestartKeyIsQuiet(t *testing.T) {
	up := echoServer(t).Addr().String()
	base := configYAML(up, "")
	d, rec, lg := inProcess(t, base)
	warned := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lg.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		out := rec.buf.String()
		rec.buf.Reset()
		return strings.Contains(out, "need a restart") && strings.Contains(out, "relay.loops")
	}
	if err := d.reload(loadYAML(t, strings.Replace(base, "loops: 2", "loops: 1", 1))); err != nil {
		t.Fatal(err)
	}
	if !warned() {
		t.Fatal("changing relay.loops did not warn that it needs a restart")
	}
	if err := d.reload(loadYAML(t, base)); err != nil {
		t.Fatal(err)
	}
	if warned() {
		t.Fatal("reverting relay.loops to its running value still warns")
	}
	if d.cfg.Relay.Loops != 2 {
		t.Fatalf("d.cfg says %d loops, 2 run", d.cfg.Relay.Loops)
	}
}
