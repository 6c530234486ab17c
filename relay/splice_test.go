//go:build linux

package relay_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/relay"
)

// spliceFromFirstRead makes every direction splice from its first relaying
// read for the test's duration, so the spliced path is the one under test,
// whatever the machine's timing does to the length of reads.
func spliceFromFirstRead(t *testing.T) {
	prev := relay.SetSpliceAfter(0)
	t.Cleanup(func() { relay.SetSpliceAfter(prev) })
}

// 200 sessions, 4 MiB each way through an echo upstream, every direction
// spliced: byte-exact both ways, each direction switched exactly once, no
// buffer held, every pipe closed with the server (the fixture checks fds).
func TestSpliceBytesExactBothWays(t *testing.T) {
	spliceFromFirstRead(t)
	const sessions, conc, size = 200, 20, 4 << 20
	up := newServer(t, echo)
	f := startRelay(t, []string{up.Addr()}, func(rc *relay.Config, _ *connector.Config, _ *relay.ListenerConfig) {
		rc.SplicePipes = 2 * conc // per loop: all of the sessions at once fit on one loop
	})
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- echoSession(f.addr, uint64(100+i), size)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := waitClosed(t, f.srv, sessions)
	if st.Closed["eof"] != sessions || st.Spliced != 2*sessions || st.BufsHeld != 0 {
		t.Fatalf("closed %v, %d directions spliced (want %d), %d buffers held", st.Closed, st.Spliced, 2*sessions, st.BufsHeld)
	}
	if st.BytesUp != sessions*size || st.BytesDown != sessions*size {
		t.Fatalf("relayed %d up, %d down, want %d each", st.BytesUp, st.BytesDown, sessions*size)
	}
	if n, _, open := f.srv.SpliceState(); n != 0 || open > 2*2*conc {
		t.Fatalf("after the sessions: %d directions still spliced, %d pipes open (cap %d)", n, open, 2*2*conc)
	}
}

// echoSession writes n bytes of seed's stream and reads them back through
// the relay, checking both the count and the checksum, then half-closes.
func echoSession(addr string, seed uint64, n int64) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, randReader(seed, n))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, m, err := sum(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("session %d: write: %w", seed, err)
	}
	if err != nil || m != n || got != mustSum(seed, n) {
		return fmt.Errorf("session %d: read %d of %d bytes (err %v), checksum match %v", seed, m, n, err, got == mustSum(seed, n))
	}
	return nil
}

// Half-close through spliced directions: the client's FIN is forwarded once
// its pipe has drained, the reply keeps flowing through the other pipe
// until the upstream's FIN, and the session ends as eof.
func TestSpliceHalfClose(t *testing.T) {
	spliceFromFirstRead(t)
	if st := halfCloseClientFirst(t); st.Spliced != 2 {
		t.Fatalf("%d directions spliced, want 2", st.Spliced)
	}
}

// An upstream reset in the middle of a spliced stream reaches the client as
// ECONNRESET after a clean prefix; the pipe that still held bytes is closed
// (not lent again), and the session counts as reset.
func TestSpliceResetReachesClient(t *testing.T) {
	spliceFromFirstRead(t)
	const total = 4 << 20
	up := newServer(t, func(c *net.TCPConn) {
		// Only once the client's "go" is here, so that its dial has seen
		// the connect complete before any reset can come back.
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			return
		}
		_, _ = io.Copy(c, randReader(5, total))
		_ = c.SetLinger(0)
		_ = c.Close()
	})
	f := startRelay(t, []string{up.Addr()}, nil)
	c := dial(t, f.addr)
	_ = c.SetReadBuffer(64 << 10) // slow enough that bytes are in flight at the reset
	if _, err := c.Write([]byte("go")); err != nil {
		t.Fatal(err)
	}
	got, n, err := sum(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read %d bytes then %v, want ECONNRESET", n, err)
	}
	if n > total {
		t.Fatalf("client got %d bytes, more than the %d sent", n, total)
	}
	if got != mustSum(5, n) {
		t.Fatalf("the %d bytes before the reset are not a prefix of what the upstream sent", n)
	}
	if st := waitClosed(t, f.srv, 1); st.Closed["reset"] != 1 || st.Spliced == 0 {
		t.Fatalf("closed %v, %d directions spliced", st.Closed, st.Spliced)
	}
}

// Backpressure while spliced: a client that reads nothing while its
// upstream pushes. The direction stops reading its source (paused) with at
// most one pipe's capacity held, and once the client reads, every byte
// arrives in order.
func TestSpliceBackpressureBound(t *testing.T) {
	spliceFromFirstRead(t)
	const pipeSize, total = 64 << 10, 64 << 20
	var pushed atomic.Int64
	up := newServer(t, func(c *net.TCPConn) {
		_ = c.SetWriteBuffer(64 << 10)
		n, _ := io.Copy(c, randReader(7, total))
		pushed.Store(n)
		_ = c.CloseWrite()
	})
	f := startRelay(t, []string{up.Addr()}, func(rc *relay.Config, _ *connector.Config, _ *relay.ListenerConfig) {
		rc.SplicePipeSize = pipeSize
	})
	c := dial(t, f.addr)
	_ = c.SetReadBuffer(64 << 10)
	_, _ = c.Write([]byte("go"))
	// The relay fills the client's socket, then its pipe, then pauses.
	waitStat(t, f.srv, "the spliced direction paused", func(st relay.Stats) bool { return st.Pauses >= 1 && st.Spliced >= 1 })
	// Paused, the direction holds bytes in its pipe; its source is not read
	// again until they drain, so what it holds can only shrink while the
	// client reads nothing: one look at it is the bound.
	var pending int
	waitFor(t, "bytes held in the paused direction's pipe", func() bool {
		_, pending, _ = f.srv.SpliceState()
		return pending > 0
	})
	if pending > pipeSize {
		t.Fatalf("a spliced direction holds %d bytes, over its pipe's %d", pending, pipeSize)
	}
	got, n, err := sum(c)
	if err != nil || n != total || got != mustSum(7, total) {
		t.Fatalf("client got %d of %d bytes (err %v), match %v", n, total, err, got == mustSum(7, total))
	}
	_ = c.CloseWrite()
	if st := waitClosed(t, f.srv, 1); st.Closed["eof"] != 1 || st.Pauses != st.Resumes {
		t.Fatalf("closed %v, pauses %d resumes %d", st.Closed, st.Pauses, st.Resumes)
	}
}

// Auto mode picks splicing only for streams: a 64-byte echo never
// splices, a 2 MiB upload does; relay.splice off never splices.
func TestSpliceAutoAndOff(t *testing.T) {
	for _, mode := range []string{relay.SpliceAuto, relay.SpliceOff} {
		t.Run(mode, func(t *testing.T) {
			up := newServer(t, echo)
			f := startRelay(t, []string{up.Addr()}, func(rc *relay.Config, _ *connector.Config, _ *relay.ListenerConfig) {
				rc.Splice = mode
			})
			if err := echoSession(f.addr, 9, 64); err != nil {
				t.Fatal(err)
			}
			if st := waitClosed(t, f.srv, 1); st.Spliced != 0 {
				t.Fatalf("a 64-byte echo spliced %d directions", st.Spliced)
			}
			if err := echoSession(f.addr, 10, 16<<20); err != nil {
				t.Fatal(err)
			}
			st := waitClosed(t, f.srv, 2)
			if mode == relay.SpliceOff && st.Spliced != 0 {
				t.Fatalf("splice off: %d directions spliced", st.Spliced)
			}
			if mode == relay.SpliceAuto && st.Spliced == 0 {
				t.Fatal("splice auto: a 16 MiB echo spliced no direction")
			}
		})
	}
}
