package logging

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// A log output that is a device node is written as it is and never rotated:
// before the fix, lumberjack renamed the node to a backup name after
// max_size_mb and created a regular file in its place (run as root with
// /dev/null, the system's /dev/null). A private node (mknod in a temp dir,
// the same device as /dev/null) keeps the test off the real one.
func TestDeviceOutputNotRotated(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "null")
	if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod needs CAP_MKNOD: %v", err)
	}
	lg, err := New(Config{Output: node, MaxSizeMB: 1, RingSize: 1024, SampleInitial: -1})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 900)
	for i := range 3000 { // ~2.7 MB: past max_size_mb twice over
		lg.Z().Info(line, zap.Int("i", i))
		if i%500 == 0 {
			flush(t, lg)
		}
	}
	flush(t, lg)
	closeLogger(t, lg)
	fi, err := os.Lstat(node)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s is now %v, not the character device it was", node, fi.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("rotation left %d entries in the directory", len(ents))
	}
}

// A FIFO output is written as it is: a reader sees every line, and the FIFO
// is still a FIFO afterwards.
func TestFIFOOutput(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "log.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Output: fifo}); err == nil {
		t.Fatal("a FIFO without a reader was accepted")
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lg, err := New(Config{Output: fifo, MaxSizeMB: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		n := 0
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "through the fifo") {
				n++
			}
		}
		got <- n
	}()
	for range 100 {
		lg.Z().Info("through the fifo")
	}
	closeLogger(t, lg)
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("fifo is now %v (%v)", fi.Mode(), err)
	}
	select {
	case n := <-got:
		if n != 100 {
			t.Fatalf("reader saw %d lines, want 100", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader never saw EOF")
	}
}

func flush(t *testing.T, lg *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func closeLogger(t *testing.T, lg *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lg.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// A symlink output (as /dev/stderr is) is written through and never rotated:
// rotation would rename the link and leave a regular file in its place.
func TestSymlinkOutputNotRotated(t *testing.T) {
	dir := t.TempDir()
	target, link := filepath.Join(dir, "real.log"), filepath.Join(dir, "link.log")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	lg, err := New(Config{Output: link, MaxSizeMB: 1, RingSize: 1024, SampleInitial: -1})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("y", 900)
	for i := range 1500 { // ~1.4 MB: past max_size_mb
		lg.Z().Info(line, zap.Int("i", i))
		if i%500 == 0 {
			flush(t, lg)
		}
	}
	closeLogger(t, lg)
	if li, err := os.Lstat(link); err != nil || li.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is no longer a symlink (%v, %v)", link, li.Mode(), err)
	}
	if fi, err := os.Stat(target); err != nil || fi.Size() < 1<<20 {
		t.Fatalf("the link's target got %d bytes (%v)", fi.Size(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("rotation left %d entries in the directory", len(ents))
	}
}
