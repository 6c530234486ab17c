package logging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// lumberjack v2.2.1 starts one "mill" goroutine per file Logger and
	// never stops it, even on Close (natefinch/lumberjack#56, #205, open).
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun"))
}

// testWriter records what the writer goroutine writes. While gate is open
// (nil or closed) writes go straight through; otherwise Write blocks until
// the gate is closed. Every Write start sends a token on entered (if it has
// room), every completed Write a token on wrote.
type testWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	gate    chan struct{}
	entered chan struct{}
	wrote   chan struct{}
	delay   time.Duration // per Write: a slow disk
	syncs   int
}

func newTestWriter(gated bool) *testWriter {
	w := &testWriter{entered: make(chan struct{}, 1), wrote: make(chan struct{}, 1)}
	if gated {
		w.gate = make(chan struct{})
	}
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	if w.gate != nil {
		<-w.gate
	}
	if w.delay > 0 {
		time.Sleep(w.delay)
	}
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *testWriter) Sync() error {
	w.mu.Lock()
	w.syncs++
	w.mu.Unlock()
	return nil
}

func (w *testWriter) open() { close(w.gate) }

func (w *testWriter) lines(t testing.TB) []map[string]any {
	t.Helper()
	w.mu.Lock()
	data := bytes.Clone(w.buf.Bytes())
	w.mu.Unlock()
	return parseLines(t, data)
}

func parseLines(t testing.TB, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", len(out)+1, err, sc.Text())
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEntered waits until the writer goroutine is inside Write.
func waitEntered(t testing.TB, w *testWriter) {
	t.Helper()
	select {
	case <-w.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("writer goroutine never called Write")
	}
}

// startLogger builds a logger on w and makes sure its goroutine is gone at the
// end of the test, whatever the test did with the gate.
func startLogger(t testing.TB, cfg Config, w *testWriter) *Logger {
	t.Helper()
	l, err := NewWithWriter(cfg, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.gate != nil {
			select {
			case <-w.gate:
			default:
				close(w.gate)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = l.Close(ctx)
		select {
		case <-l.done:
		case <-ctx.Done():
			t.Error("writer goroutine did not exit")
		}
	})
	return l
}

// closeOK closes l with a generous deadline and fails on error.
func closeOK(t testing.TB, l *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// split separates access lines from the rest.
func split(lines []map[string]any) (access, other []map[string]any) {
	for _, m := range lines {
		if m["logger"] == AccessLoggerName {
			access = append(access, m)
		} else {
			other = append(other, m)
		}
	}
	return access, other
}

// reportedDrops sums the "dropped" field of the logger's drop-report lines.
func reportedDrops(lines []map[string]any) uint64 {
	var n uint64
	for _, m := range lines {
		if m["logger"] == "logging" {
			n += uint64(m["dropped"].(float64))
		}
	}
	return n
}

func num(t testing.TB, m map[string]any, key string) int {
	t.Helper()
	f, ok := m[key].(float64)
	if !ok {
		t.Fatalf("field %q missing or not a number in %v", key, m)
	}
	return int(f)
}
