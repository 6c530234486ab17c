//go:build linux

package relay_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/edge/route"
	"github.com/relayd/relayd/relay"
)

// benchPeerEnv makes the test binary a benchmark peer (see runBenchPeer).
const benchPeerEnv = "RELAYD_BENCH_PEER"

// runBenchPeer is the child process of BenchmarkForwardSession: an echo
// upstream and a client, both outside the relay's process so that the
// relay's allocation counts are its own. It prints "UP addr", then for each
// "RUN addr n" line on stdin makes n sessions through addr one after
// another (connect, 64 B out, 64 B back, FIN both ways) and prints "DONE".
func runBenchPeer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	fmt.Println("UP", ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	hello := goClientHello("a.example")
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 3 || (f[0] != "RUN" && f[0] != "HELLO") {
			continue
		}
		msg := make([]byte, 64)
		if f[0] == "HELLO" { // a TLS ClientHello as the payload: what a routed listener peeks at
			msg = hello
		}
		buf := make([]byte, len(msg))
		n, _ := strconv.Atoi(f[2])
		for range n {
			c, err := net.Dial("tcp", f[1])
			if err == nil {
				_, err = c.Write(msg)
			}
			if err == nil {
				_, err = io.ReadFull(c, buf)
			}
			if err == nil {
				_ = c.(*net.TCPConn).CloseWrite()
				_, err = io.Copy(io.Discard, c)
			}
			if c != nil {
				c.Close()
			}
			if err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
		}
		fmt.Println("DONE")
	}
	os.Exit(0)
}

// startBenchPeer starts the benchmark peer (runBenchPeer) and returns its
// stdin, a reader of its next line, and its echo upstream's address.
func startBenchPeer(b *testing.B) (io.Writer, func() string, string) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchPeerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	out := bufio.NewScanner(stdout)
	line := func() string {
		if !out.Scan() {
			b.Fatalf("benchmark peer: %v", out.Err())
		}
		if t := out.Text(); !strings.HasPrefix(t, "ERR") {
			return t
		}
		b.Fatalf("benchmark peer: %s", out.Text())
		return ""
	}
	up, ok := strings.CutPrefix(line(), "UP ")
	if !ok {
		b.Fatal("benchmark peer did not start")
	}
	return stdin, line, up
}

// BenchmarkForwardSession: short forward sessions (connect, 64 B echo,
// close), one at a time, with the client and the upstream in a child
// process. relay-allocs/op and relay-B/op are the allocations of this
// process — the relay, the connector and their loops — per session.
func BenchmarkForwardSession(b *testing.B) {
	stdin, line, up := startBenchPeer(b)
	f := startRelay(b, []string{up}, nil)
	run := func(n int) {
		fmt.Fprintf(stdin, "RUN %s %d\n", f.addr, n)
		if l := line(); l != "DONE" {
			b.Fatalf("benchmark peer: %q", l)
		}
	}
	run(200) // warm up: loop fd tables, request and buffer pools
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	run(b.N)
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N), "relay-allocs/op")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N), "relay-B/op")
	waitClosed(b, f.srv, uint64(200+b.N))
}

// goClientHello is the first flight of Go's crypto/tls for name (one
// record, about 1.8 KB with the post-quantum key share).
func goClientHello(name string) []byte {
	c, srv := net.Pipe()
	defer srv.Close()
	go func() { _ = tls.Client(c, &tls.Config{ServerName: name}).Handshake(); c.Close() }()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(srv, hdr); err != nil {
		panic(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(srv, body); err != nil {
		panic(err)
	}
	return append(hdr, body...)
}

// BenchmarkRoutedSession: the proxy CPU of a session on a listener with
// routes (peek at the ClientHello, match its SNI, dial the route's group)
// against a plain forward session, with the same 1.8 KB ClientHello as
// the payload of both, echoed back: the client and upstream in a child
// process, so this process's CPU (getrusage) is the relay's own. The two
// alternate in rounds of 500 sessions, and relay-cpu-µs/op of each and
// their ratio (routed/forward) are reported.
func BenchmarkRoutedSession(b *testing.B) {
	stdin, line, up := startBenchPeer(b)
	fwd := startRelay(b, []string{up}, nil)
	routed := startRelay(b, []string{"127.0.0.1:1"}, func(_ *relay.Config, _ *connector.Config, lc *relay.ListenerConfig) {
		lc.Routes = []relay.Route{
			{Rule: route.Rule{Name: "b", SNI: []string{"b.example", "*.b.example"}}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}},
			{Rule: route.Rule{Name: "a", SNI: []string{"a.example"}}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort(up)}},
		}
	})
	run := func(addr string, n int) time.Duration {
		c0 := selfCPU()
		fmt.Fprintf(stdin, "HELLO %s %d\n", addr, n)
		if l := line(); l != "DONE" {
			b.Fatalf("benchmark peer: %q", l)
		}
		return selfCPU() - c0
	}
	run(fwd.addr, 200) // warm up
	run(routed.addr, 200)
	const round = 500
	var cf, cr time.Duration
	var nf, nr int
	b.ResetTimer()
	for left := b.N; left > 0; left -= round {
		k := min(round, left)
		cf += run(fwd.addr, k)
		cr += run(routed.addr, k)
		nf, nr = nf+k, nr+k
	}
	b.StopTimer()
	f, r := float64(cf.Microseconds())/float64(nf), float64(cr.Microseconds())/float64(nr)
	b.ReportMetric(f, "forward-cpu-µs/op")
	b.ReportMetric(r, "routed-cpu-µs/op")
	b.ReportMetric(r/f, "routed/forward")
	if st := routed.srv.EdgeStats()["test"]; st.Routed["a"] != uint64(200+nr) {
		b.Fatalf("%d sessions routed to a, want %d", st.Routed["a"], 200+nr)
	}
}

// selfCPU is this process's CPU time so far, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
