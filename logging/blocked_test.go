package logging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// runProducers makes total Access calls from n goroutines and fails if they
// do not all return within a generous bound: a blocked producer would hang.
func runProducers(t *testing.T, l *Logger, n, total int) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for p := range n {
			wg.Go(func() {
				e := AccessEntry{Listener: "main", Loop: p, Reason: "eof"}
				for i := range total / n {
					e.BytesUp = uint64(i)
					l.Access(&e)
					if i%1000 == 0 {
						l.Z().Error("upstream refused", zap.Int("loop", p)) // an error flood, sampled
					}
				}
			})
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("producers blocked on a stuck log output")
	}
}

// Acceptance 2: the output is a writer that blocks forever. A million
// Access calls from several goroutines all return, every one that did not
// fit the ring is counted as dropped, and Close returns at its deadline
// with an error that says how many entries were left.
func TestBlockedOutputNeverBlocksProducers(t *testing.T) {
	const ringSize, total = 1024, 1_000_000
	w := newTestWriter(true) // never opened until cleanup
	l := startLogger(t, Config{RingSize: ringSize, Access: true, FlushTimeout: time.Minute}, w)
	l.Access(&AccessEntry{}) // the writer takes it and blocks in Write
	waitEntered(t, w)

	runProducers(t, l, 4, total)

	zapCalls := uint64(4 * (total / 4 / 1000)) // error lines that passed the sampler count too
	wantDropped := uint64(total) + zapCalls - l.Sampled() - ringSize
	if d := l.Dropped(); d != wantDropped {
		t.Fatalf("Dropped = %d, want %d (total %d + zap %d - sampled %d - ring %d)",
			d, wantDropped, total, zapCalls, l.Sampled(), ringSize)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Close(ctx)
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("Close took %v with a 200ms deadline", el)
	}
	if !errors.Is(err, ErrFlushTimeout) {
		t.Fatalf("Close = %v, want ErrFlushTimeout", err)
	}
	if want := fmt.Sprintf("%d entries not written", ringSize); !strings.Contains(err.Error(), want) {
		t.Fatalf("Close error %q does not say %q", err, want)
	}
	// Cleanup opens the gate and waits for the writer goroutine to exit.
}

// Acceptance 2 with a real pipe nobody reads: once the kernel's pipe buffer
// is full the writer goroutine is stuck in write(2); producers carry on,
// the drop counter grows, Close returns at its deadline.
func TestPipeNobodyReads(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewWithWriter(Config{RingSize: 1024, Access: true}, pw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pr.Close() // the stuck write now fails with EPIPE and the writer drains and exits
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = l.Close(ctx) // the pipe cannot be synced; its error is expected
		select {
		case <-l.done:
		case <-ctx.Done():
			t.Error("writer goroutine did not exit")
		}
		pw.Close()
	})
	const total = 400_000 // far more than a 64 KiB pipe buffer plus the ring can take
	runProducers(t, l, 2, total)
	if d := l.Dropped(); d == 0 {
		t.Fatal("no entries dropped with a pipe nobody reads")
	}
	before := l.Dropped()
	runProducers(t, l, 2, 10_000)
	if d := l.Dropped(); d < before+10_000 {
		t.Fatalf("Dropped grew from %d to %d over 10000 more entries into a full ring", before, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Close(ctx); !errors.Is(err, ErrFlushTimeout) {
		t.Fatalf("Close = %v, want ErrFlushTimeout", err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("Close took %v with a 200ms deadline", el)
	}
}
