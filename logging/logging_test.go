package logging

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// noSampling makes zap lines countable exactly.
const noSampling = -1

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; nil = valid
	}{
		{"zero", Config{}, nil},
		{"full", Config{Level: "debug", Format: "console", Output: "/tmp/x.log", RingSize: 16, Access: true,
			FlushTimeout: time.Second, MaxSizeMB: 1, MaxBackups: -1, MaxAgeDays: 3, DropReport: time.Second}, nil},
		{"level", Config{Level: "loud"}, []string{`log.level: "loud" is not one of debug|info|warn|error`}},
		{"level case", Config{Level: "INFO"}, []string{`log.level: "INFO"`}},
		{"format", Config{Format: "xml"}, []string{`log.format: "xml" is not one of json|console`}},
		{"ring", Config{RingSize: -1}, []string{"log.ring_size: -1 is not in 0..4194304"}},
		{"ring big", Config{RingSize: 1 << 30}, []string{"log.ring_size: 1073741824"}},
		{"entry", Config{EntryBytes: -5}, []string{"log.entry_bytes: -5"}},
		{"flush", Config{FlushTimeout: -time.Second}, []string{"log.flush_timeout: -1s is negative"}},
		{"size", Config{MaxSizeMB: -1}, []string{"log.max_size_mb: -1 is negative"}},
		{"age", Config{MaxAgeDays: -1}, []string{"log.max_age_days: -1 is negative"}},
		{"report", Config{DropReport: -1}, []string{"log.drop_report: -1ns is negative"}},
		{"thereafter", Config{SampleThereafter: -2}, []string{"log.sample_thereafter: -2 is negative"}},
		{"several", Config{Level: "x", Format: "y"}, []string{"log.level", "log.format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate = %v, want ErrConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, nerr := New(tt.cfg); !errors.Is(nerr, ErrConfig) {
				t.Errorf("New accepted an invalid config: %v", nerr)
			}
		})
	}
}

// Within one producer, access lines and zap lines come out in the order
// they went in, and none is lost while the ring has room.
func TestOrderWithinOneProducer(t *testing.T) {
	const n = 5000
	w := newTestWriter(false)
	l := startLogger(t, Config{RingSize: 2 * n, Access: true, SampleInitial: noSampling}, w)
	for i := range n {
		l.Access(&AccessEntry{Loop: i, Reason: "eof"})
		l.Z().Info("line", zap.Int("seq", i))
	}
	closeOK(t, l)
	lines := w.lines(t)
	if len(lines) != 2*n {
		t.Fatalf("got %d lines, want %d", len(lines), 2*n)
	}
	for i := range n {
		a, z := lines[2*i], lines[2*i+1]
		if a["logger"] != AccessLoggerName || num(t, a, FieldLoop) != i {
			t.Fatalf("line %d = %v, want access line with loop %d", 2*i, a, i)
		}
		if z["msg"] != "line" || num(t, z, "seq") != i {
			t.Fatalf("line %d = %v, want zap line with seq %d", 2*i+1, z, i)
		}
	}
	if d := l.Dropped(); d != 0 {
		t.Fatalf("Dropped = %d, want 0", d)
	}
	if got := l.Written(); got != 2*n {
		t.Fatalf("Written = %d, want %d", got, 2*n)
	}
}

// Many producers at once (run with -race): count in = count out, and each
// producer's own entries stay in order.
func TestConcurrentProducers(t *testing.T) {
	const producers, per = 8, 3000
	w := newTestWriter(false)
	l := startLogger(t, Config{RingSize: 2 * producers * per, Access: true, SampleInitial: noSampling}, w)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			name := fmt.Sprintf("p%d", p)
			for i := range per {
				if i%2 == 0 {
					l.Access(&AccessEntry{Listener: name, Loop: i})
				} else {
					l.Z().Info(name, zap.Int("seq", i))
				}
			}
		})
	}
	wg.Wait()
	closeOK(t, l)
	lines := w.lines(t)
	if len(lines) != producers*per {
		t.Fatalf("got %d lines, want %d (dropped %d)", len(lines), producers*per, l.Dropped())
	}
	next := map[string]int{}
	for _, m := range lines {
		var name string
		var seq int
		if m["logger"] == AccessLoggerName {
			name, seq = m[FieldListener].(string), num(t, m, FieldLoop)
		} else {
			name, seq = m["msg"].(string), num(t, m, "seq")
		}
		if seq != next[name] {
			t.Fatalf("producer %s: got seq %d, want %d", name, seq, next[name])
		}
		next[name]++
	}
	for p := range producers {
		if got := next[fmt.Sprintf("p%d", p)]; got != per {
			t.Fatalf("producer p%d: %d entries, want %d", p, got, per)
		}
	}
}

// With the writer stuck inside Write, the ring takes exactly RingSize more
// entries; every further one is dropped and counted exactly.
func TestExactDropCountWhenFull(t *testing.T) {
	const ringSize, extra = 1000, 37
	w := newTestWriter(true)
	l := startLogger(t, Config{RingSize: ringSize, Access: true, SampleInitial: noSampling}, w)
	l.Access(&AccessEntry{Loop: -1}) // taken by the writer, which then blocks in Write
	waitEntered(t, w)
	for i := range ringSize {
		l.Access(&AccessEntry{Loop: i})
	}
	if d := l.Dropped(); d != 0 {
		t.Fatalf("Dropped = %d after filling the ring exactly, want 0", d)
	}
	for i := range extra {
		l.Access(&AccessEntry{Loop: ringSize + i})
	}
	l.Z().Warn("also dropped")
	if d := l.Dropped(); d != extra+1 {
		t.Fatalf("Dropped = %d, want %d", d, extra+1)
	}
	w.open()
	closeOK(t, l)
	access, other := split(w.lines(t))
	if len(access) != ringSize+1 {
		t.Fatalf("%d access lines written, want %d", len(access), ringSize+1)
	}
	for i, m := range access {
		if num(t, m, FieldLoop) != i-1 {
			t.Fatalf("access line %d has loop %v, want %d", i, m[FieldLoop], i-1)
		}
	}
	if got := reportedDrops(other); got != extra+1 {
		t.Fatalf("drop reports sum to %d, want %d: %v", got, extra+1, other)
	}
}

// Close writes everything that was queued, even when the output is slow.
func TestCloseFlushesQueued(t *testing.T) {
	const n = 3000
	w := newTestWriter(false)
	w.delay = 2 * time.Millisecond // a slow disk; Close must still get everything out
	l := startLogger(t, Config{RingSize: n, Access: true, FlushTimeout: 30 * time.Second}, w)
	for i := range n {
		l.Access(&AccessEntry{Loop: i})
	}
	start := time.Now()
	closeOK(t, l)
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("Close took %v", el)
	}
	if got := len(w.lines(t)); got != n {
		t.Fatalf("%d lines after Close, want %d", got, n)
	}
	w.mu.Lock()
	syncs := w.syncs
	w.mu.Unlock()
	if syncs != 1 {
		t.Fatalf("output synced %d times at Close, want 1", syncs)
	}
	// Safe twice; later entries are dropped and counted.
	closeOK(t, l)
	l.Access(&AccessEntry{})
	l.Z().Info("late")
	if d := l.Dropped(); d != 2 {
		t.Fatalf("Dropped after Close = %d, want 2", d)
	}
}

// Close on a stuck output returns at its deadline saying what was left;
// a second Close after the output recovers writes the rest.
func TestCloseDeadlineThenRecover(t *testing.T) {
	const n = 500
	w := newTestWriter(true)
	l := startLogger(t, Config{RingSize: 1024, Access: true}, w)
	l.Access(&AccessEntry{Loop: -1})
	waitEntered(t, w)
	for i := range n {
		l.Access(&AccessEntry{Loop: i})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Close(ctx)
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Close took %v with a 100ms deadline", el)
	}
	if !errors.Is(err, ErrFlushTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want ErrFlushTimeout and DeadlineExceeded", err)
	}
	if want := fmt.Sprintf("%d entries not written", n); !strings.Contains(err.Error(), want) {
		t.Fatalf("Close error %q does not say %q", err, want)
	}
	w.open()
	closeOK(t, l)
	if got := len(w.lines(t)); got != n+1 {
		t.Fatalf("%d lines after recovery, want %d", got, n+1)
	}
}

// FlushTimeout bounds Close even when ctx has no deadline.
func TestCloseBoundedByFlushTimeout(t *testing.T) {
	w := newTestWriter(true)
	l := startLogger(t, Config{Access: true, FlushTimeout: 50 * time.Millisecond}, w)
	l.Access(&AccessEntry{})
	waitEntered(t, w)
	l.Access(&AccessEntry{})
	if err := l.Close(context.Background()); !errors.Is(err, ErrFlushTimeout) {
		t.Fatalf("Close = %v, want ErrFlushTimeout", err)
	}
}

// Flush and Z().Sync() return once what was queued is written, without
// closing; a DPanic line is flushed before the call returns.
func TestFlushAndSync(t *testing.T) {
	w := newTestWriter(false)
	l := startLogger(t, Config{Access: true, SampleInitial: noSampling}, w)
	for i := range 100 {
		l.Access(&AccessEntry{Loop: i})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(w.lines(t)); got != 100 {
		t.Fatalf("%d lines after Flush, want 100", got)
	}
	l.Z().Info("x")
	if err := l.Z().Sync(); err != nil {
		t.Fatal(err)
	}
	if got := len(w.lines(t)); got != 101 {
		t.Fatalf("%d lines after Sync, want 101", got)
	}
	l.Z().DPanic("boom") // production logger: logs, does not panic
	lines := w.lines(t)
	if len(lines) != 102 || lines[101]["msg"] != "boom" || lines[101]["stacktrace"] == nil {
		t.Fatalf("DPanic line not flushed with a stacktrace: %v", lines[len(lines)-1])
	}
}

// The periodic report says exactly how many entries were dropped.
func TestDropReport(t *testing.T) {
	const ringSize, extra = 64, 10
	w := newTestWriter(true)
	l := startLogger(t, Config{RingSize: ringSize, Access: true, DropReport: 20 * time.Millisecond}, w)
	l.Access(&AccessEntry{})
	waitEntered(t, w)
	for range ringSize + extra {
		l.Access(&AccessEntry{})
	}
	w.open()
	want := fmt.Sprintf("dropped %d log entries in the last ", extra)
	deadline := time.After(30 * time.Second)
	for {
		_, other := split(w.lines(t))
		if len(other) > 0 {
			m := other[0]
			if len(other) != 1 || !strings.HasPrefix(m["msg"].(string), want) ||
				num(t, m, "dropped") != extra || num(t, m, "dropped_total") != extra || m["level"] != "warn" {
				t.Fatalf("drop report = %v, want one line %q with dropped=%d", other, want, extra)
			}
			break
		}
		select {
		case <-w.wrote:
		case <-deadline:
			t.Fatal("no drop report")
		}
	}
	if got := len(w.lines(t)); got != ringSize+2 {
		t.Fatalf("%d lines, want %d", got, ringSize+2)
	}
}

func TestSetAccessAndLevel(t *testing.T) {
	w := newTestWriter(false)
	l := startLogger(t, Config{Level: "warn", SampleInitial: noSampling}, w)
	if l.AccessEnabled() {
		t.Fatal("access on with Access: false")
	}
	l.Access(&AccessEntry{Loop: 1}) // off: ignored, not counted
	l.SetAccess(true)
	l.Access(&AccessEntry{Loop: 2})
	l.SetAccess(false)
	l.Access(&AccessEntry{Loop: 3})
	l.Z().Info("hidden")
	l.Z().Warn("shown")
	if err := l.SetLevel("debug"); err != nil {
		t.Fatal(err)
	}
	l.Z().Debug("debug shown")
	if err := l.SetLevel("loud"); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("SetLevel(loud) = %v", err)
	}
	closeOK(t, l)
	lines := w.lines(t)
	got := []string{}
	for _, m := range lines {
		got = append(got, fmt.Sprint(m["msg"], m[FieldLoop]))
	}
	want := []string{"session2", "shown<nil>", "debug shown<nil>"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lines %v, want %v", got, want)
	}
	if l.Dropped() != 0 {
		t.Fatalf("Dropped = %d", l.Dropped())
	}
}

// An error flood is sampled: first SampleInitial, then every
// SampleThereafter-th per second; the rest are counted by Sampled.
func TestSampling(t *testing.T) {
	const total = 250
	w := newTestWriter(false)
	l := startLogger(t, Config{SampleInitial: 5, SampleThereafter: 100}, w)
	for range total {
		l.Z().Error("upstream refused")
	}
	closeOK(t, l)
	// n = 1..5 pass, then n = 105, 205. (The sampler's window is one second;
	// 250 calls take far less, even under -race on a loaded machine.)
	if got := len(w.lines(t)); got != 7 {
		t.Fatalf("%d lines, want 7", got)
	}
	if s := l.Sampled(); s != total-7 {
		t.Fatalf("Sampled = %d, want %d", s, total-7)
	}
}

func TestNop(t *testing.T) {
	l := Nop()
	l.SetAccess(true)
	if l.AccessEnabled() {
		t.Fatal("Nop access enabled")
	}
	l.Access(&AccessEntry{})
	l.Z().Error("nothing")
	if err := l.SetLevel("debug"); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() != 0 {
		t.Fatal("Nop dropped")
	}
	for range 2 {
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// A file output is created (with its directory), rotated by size, and
// closed by Close; nothing is lost across the rotation.
func TestFileOutputRotates(t *testing.T) {
	const n = 6000 // ~240 bytes each: more than 1 MB
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "relayd.log")
	l, err := New(Config{Output: path, MaxSizeMB: 1, MaxBackups: 3, RingSize: n, Access: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		l.Access(&AccessEntry{Listener: "main", Loop: i, Client: netip.MustParseAddrPort("127.0.0.1:40000"), Reason: "eof"})
	}
	closeOK(t, l)
	files, _ := filepath.Glob(filepath.Join(dir, "sub", "relayd*.log"))
	if len(files) < 2 {
		t.Fatalf("files %v: want the live file and at least one rotated backup", files)
	}
	total := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 1<<20 {
			t.Errorf("%s is %d bytes, over MaxSizeMB", f, len(data))
		}
		total += len(parseLines(t, data))
	}
	if total != n {
		t.Fatalf("%d lines across %d files, want %d", total, len(files), n)
	}
}

func TestFileOutputBadPath(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Output: filepath.Join(blocker, "x.log")}) // a file used as a directory
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "log.output") {
		t.Fatalf("New = %v, want ErrConfig naming log.output", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk on fire") }
func (failingWriter) Sync() error               { return nil }

// Entries lost in failed writes count as dropped; so does the drop report
// that Close then fails to write.
func TestWriteErrorsCountAsDropped(t *testing.T) {
	l, err := NewWithWriter(Config{Access: true, DropReport: time.Hour}, failingWriter{})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		l.Access(&AccessEntry{})
	}
	closeOK(t, l)
	if d := l.Dropped(); d != 11 {
		t.Fatalf("Dropped = %d, want 10 entries + 1 drop report", d)
	}
	if n := l.WriteErrors(); n < 2 {
		t.Fatalf("WriteErrors = %d, want at least 2", n)
	}
	if l.Written() != 0 {
		t.Fatalf("Written = %d", l.Written())
	}
}
