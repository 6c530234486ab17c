//go:build linux

package relay_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
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
	msg, buf := make([]byte, 64), make([]byte, 64)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 3 || f[0] != "RUN" {
			continue
		}
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

// BenchmarkForwardSession: short forward sessions (connect, 64 B echo,
// close), one at a time, with the client and the upstream in a child
// process. relay-allocs/op and relay-B/op are the allocations of this
// process — the relay, the connector and their loops — per session.
func BenchmarkForwardSession(b *testing.B) {
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
