//go:build linux

package connector

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// acceptCloser listens on 127.0.0.1 and accepts and closes connections with
// raw syscalls in one goroutine, so that the benchmark's allocation count is
// the connector's alone (net.Listener allocates per Accept).
func acceptCloser(b *testing.B) netip.AddrPort {
	b.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		b.Fatal(err)
	}
	ap := sockname(b, lfd)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			fd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
			switch e {
			case 0:
				unix.Close(int(fd))
			case unix.EINTR, unix.ECONNABORTED, unix.EMFILE, unix.ENFILE:
			default: // EINVAL after shutdown: done
				return
			}
		}
	}()
	b.Cleanup(func() {
		_ = unix.Shutdown(lfd, unix.SHUT_RDWR) // wakes the blocked accept
		wg.Wait()
		unix.Close(lfd)
	})
	return ap
}

// resetClose closes fd with a RST: no TIME_WAIT piles up on either side, so
// a long benchmark does not run out of loopback ports.
func resetClose(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

type benchHandler struct{ done chan int }

func (h *benchHandler) Connected(r *Request) {
	if r.FD >= 0 {
		resetClose(r.FD)
	}
	h.done <- int(r.Cookie)
}

// BenchmarkConnect measures connects/s through the pool (default config: 2
// workers × 32 in flight) to a loopback listener, keeping twice the in-flight
// capacity outstanding so the queue is never empty. Requests are reused the way the
// relay does, by assigning a fresh literal.
func BenchmarkConnect(b *testing.B) { benchConnect(b, Config{NoDelay: true}) }

// BenchmarkConnectShape sweeps workers × in-flight cap on loopback, where
// a connect costs only CPU. It shows what the cap costs in throughput, not
// what it saves against a real upstream (SYN back-off, accept-queue
// overflow), which loopback cannot show.
func BenchmarkConnectShape(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		for _, inflight := range []int{4, 32, 128} {
			b.Run(fmt.Sprintf("workers=%d/inflight=%d", workers, inflight), func(b *testing.B) {
				benchConnect(b, Config{Workers: workers, MaxInflight: inflight, NoDelay: true})
			})
		}
	}
}

func benchConnect(b *testing.B, cfg Config) {
	addr := acceptCloser(b)
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	window := 2 * cfg.withDefaults().Workers * cfg.withDefaults().MaxInflight
	h := &benchHandler{done: make(chan int, window)}
	reqs := make([]Request, window)
	for i := range reqs {
		h.done <- i
	}
	addrs := []netip.AddrPort{addr}
	failed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		idx := <-h.done
		r := &reqs[idx]
		if r.Err != nil {
			failed++
		}
		*r = Request{Addrs: addrs, Handler: h, Cookie: uint64(idx)}
		if err := p.Submit(r); err != nil {
			b.Fatal(err)
		}
	}
	for range window {
		idx := <-h.done
		if reqs[idx].Err != nil {
			failed++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
	b.ReportMetric(float64(p.Stats().Wakeups)/float64(b.N), "wakeups/op")
	if failed > 0 {
		st := p.Stats()
		b.Fatalf("%d of %d connects failed: %v", failed, b.N, st.Failures)
	}
}

// BenchmarkNetDial is the baseline: net.Dial from 64 goroutines (as many
// connects in flight as the pool's default) to the same listener.
func BenchmarkNetDial(b *testing.B) {
	addr := acceptCloser(b).String()
	b.ReportAllocs()
	b.SetParallelism(64 / max(1, runtimeProcs()))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := net.Dial("tcp4", addr)
			if err != nil {
				b.Error(err)
				return
			}
			tc := c.(*net.TCPConn)
			_ = tc.SetLinger(0)
			tc.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
