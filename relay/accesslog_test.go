//go:build linux

package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/logging"
	"github.com/relayd/relayd/relay"
)

// stuckWriter blocks every Write until released: a log output that stalled
// (full pipe, hung disk, frozen journald).
type stuckWriter struct{ release chan struct{} }

func (w *stuckWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }
func (w *stuckWriter) Sync() error                 { return nil }

func rrSessions(t *testing.T, addr string, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 8)
			for range next {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errs <- err
					continue
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Write([]byte("12345678"))
				if err == nil {
					_, err = io.ReadFull(c, buf)
				}
				if err == nil && string(buf) != "12345678" {
					err = fmt.Errorf("echo %q", buf)
				}
				c.Close()
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Issue 3 acceptance 2: the log output blocks forever; sessions keep
// completing, the drop counter grows, and Close returns by its deadline.
func TestStuckLogOutputDoesNotStallRelay(t *testing.T) {
	const sessions, ring = 2000, 64
	w := &stuckWriter{release: make(chan struct{})}
	log, err := logging.NewWithWriter(logging.Config{Access: true, RingSize: ring}, zapcore.AddSync(w))
	if err != nil {
		t.Fatal(err)
	}
	up := newServer(t, echo)
	f := startRelay(t, []string{up.Addr()}, func(rc *relay.Config, _ *connector.Config, _ *relay.ListenerConfig) {
		rc.Log = log
	})
	t0 := time.Now()
	rrSessions(t, f.addr, sessions, 16)
	took := time.Since(t0)
	st := waitClosed(t, f.srv, sessions)
	if st.Closed["eof"] != sessions {
		t.Fatalf("closed %v", st.Closed)
	}
	// Every access entry beyond what the ring (and the writer's one stuck
	// batch) holds was dropped, and counted.
	if d := log.Dropped(); d < sessions-2*ring {
		t.Fatalf("dropped %d of %d entries with a stuck output and a %d-entry ring", d, sessions, ring)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c0 := time.Now()
	err = log.Close(ctx)
	if closeTook := time.Since(c0); closeTook > 2*time.Second {
		t.Fatalf("Close took %v with a 300ms deadline", closeTook)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a stuck output: %v, want a deadline error", err)
	}
	close(w.release) // let the writer goroutine finish
	t.Logf("%d sessions in %v with the log output stuck; %d entries dropped", sessions, took, log.Dropped())
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) Sync() error                 { return nil }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// One access line per session, with the counts the relay moved.
func TestAccessLogEntry(t *testing.T) {
	out := &syncBuf{}
	log, err := logging.NewWithWriter(logging.Config{Access: true}, zapcore.AddSync(out))
	if err != nil {
		t.Fatal(err)
	}
	up := newServer(t, echo)
	f := startRelay(t, []string{up.Addr()}, func(rc *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) {
		rc.Log = log
		lc.Name = "acc"
	})
	rrSessions(t, f.addr, 1, 1)
	waitClosed(t, f.srv, 1)
	if err := log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var entry map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(line, `"reason"`) {
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
		}
	}
	if entry == nil {
		t.Fatalf("no access line in:\n%s", out.String())
	}
	if entry["listener"] != "acc" || entry["reason"] != "eof" || entry["upstream"] != up.Addr() {
		t.Fatalf("entry %v", entry)
	}
	for _, k := range []string{"bytes_up", "bytes_down"} {
		if v, _ := entry[k].(float64); v != 8 {
			t.Fatalf("%s = %v, want 8 (entry %v)", k, entry[k], entry)
		}
	}
}
