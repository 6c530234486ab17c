package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"github.com/relayd/relayd/configs"
)

// MaxProcs bounds LoadConfig.Procs and SinkConfig.Procs.
const MaxProcs = 64

// selfExe is the binary RunProcs and RunSinkProcs start: this one.
const selfExe = "/proc/self/exe"

// Split is child i's share of a run over n processes: sessions, streams,
// concurrency, connect pacing and source addresses divided (sources in
// disjoint contiguous slices while there are at least n of them).
func (c LoadConfig) Split(i, n int) (LoadConfig, error) {
	share := func(total int) int { return total/n + btoi(i < total%n) }
	ceil := func(total int) int { return max((total+n-1)/n, 1) }
	s := c
	s.Procs = 1
	s.Sessions = share(c.Sessions)
	if c.Streams > 0 {
		s.Streams = share(c.Streams)
	}
	if c.Concurrency > 0 {
		s.Concurrency = ceil(c.Concurrency)
	}
	if c.MaxInflightConnects > 0 {
		s.MaxInflightConnects = ceil(c.MaxInflightConnects)
	}
	s.ConnectRate = c.ConnectRate / float64(n)
	s.Rate = c.Rate / float64(n)
	s.Proc = i
	if c.RecordPath != "" {
		s.RecordPath = fmt.Sprintf("%s.%d", c.RecordPath, i)
	}
	ips, err := configs.ParseAddrList(c.SourceIPs)
	if err != nil {
		return s, fmt.Errorf("%w: source-ips: %v", ErrBadConfig, err)
	}
	if len(ips) > 0 {
		var mine []string
		if len(ips) >= n {
			per, extra := len(ips)/n, len(ips)%n
			from := i*per + min(i, extra)
			for _, a := range ips[from : from+per+btoi(i < extra)] {
				mine = append(mine, a.String())
			}
		} else {
			mine = []string{ips[i%len(ips)].String()}
		}
		s.SourceIPs = strings.Join(mine, ",")
	}
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// RunProcs runs cfg over cfg.Procs child processes (this binary, with the
// arguments args returns for each child's share) and merges their results
// exactly (Merge). In idle mode the target's RSS is measured here, once
// every child holds all its sessions.
func RunProcs(ctx context.Context, cfg LoadConfig, args func(child LoadConfig, heldFD int) []string) (*Result, error) {
	n := cfg.Procs
	if cfg.Mode == ModeBulk && cfg.Streams < n {
		return nil, fmt.Errorf("%w: bulk over %d processes needs at least as many --streams", ErrBadConfig, n)
	}
	var targets []int
	seen := map[int]bool{}
	for _, p := range append([]int{cfg.PID}, cfg.PIDs...) {
		if p > 0 && !seen[p] {
			seen[p] = true
			targets = append(targets, p)
		}
	}
	rssBefore := rssSum(targets)
	type kid struct {
		cmd  *exec.Cmd
		out  bytes.Buffer
		held *os.File
	}
	kids := make([]*kid, n)
	for i := range n {
		c, err := cfg.Split(i, n)
		if err != nil {
			return nil, err
		}
		k := &kid{}
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		k.held = pr
		k.cmd = exec.Command(selfExe, args(c, 3)...)
		k.cmd.Args[0] = os.Args[0]
		k.cmd.Stdout, k.cmd.Stderr = &k.out, os.Stderr
		k.cmd.ExtraFiles = []*os.File{pw}
		if err := k.cmd.Start(); err != nil {
			pw.Close()
			pr.Close()
			for _, o := range kids[:i] {
				_ = o.cmd.Process.Kill()
				_ = o.cmd.Wait()
			}
			return nil, fmt.Errorf("loadtest: start child %d: %w", i, err)
		}
		pw.Close()
		kids[i] = k
	}
	// Every child says "held" once its idle sessions are open (or closes
	// the pipe by exiting); then the target holds them all.
	var helds sync.WaitGroup
	for _, k := range kids {
		helds.Add(1)
		go func() {
			defer helds.Done()
			_, _ = bufio.NewReader(k.held).ReadString('\n')
		}()
	}
	heldAll := make(chan uint64, 1)
	go func() {
		helds.Wait()
		if cfg.Held != nil && cfg.Mode == ModeIdle {
			cfg.Held() // every child holds its sessions: so does the whole run
		}
		if cfg.Mode == ModeIdle && len(targets) > 0 {
			heldAll <- rssSum(targets) // every session was proven by an echo: the target holds them
			return
		}
		heldAll <- 0
	}()
	stop := context.AfterFunc(ctx, func() {
		for _, k := range kids {
			_ = k.cmd.Process.Signal(syscall.SIGINT)
		}
	})
	defer stop()
	var parts []*Result
	var errs []error
	for i, k := range kids {
		werr := k.cmd.Wait()
		k.held.Close()
		r, perr := ParseResult(bytes.TrimSpace(lastLine(k.out.Bytes())))
		if perr != nil {
			errs = append(errs, fmt.Errorf("child %d: %v (%v)", i, perr, werr))
			continue
		}
		parts = append(parts, r)
	}
	rssAfter := <-heldAll
	if cfg.RecordPath != "" {
		// One file of every child's segments; a child that left none (or a
		// cut one) is reported, and its part kept for a look.
		var segs []string
		for i := range n {
			segs = append(segs, fmt.Sprintf("%s.%d", cfg.RecordPath, i))
		}
		if err := ConcatRecords(cfg.RecordPath, segs); err != nil {
			errs = append(errs, err)
		} else {
			for _, p := range segs {
				_ = os.Remove(p)
			}
		}
	}
	if len(parts) == 0 {
		return nil, errors.Join(errs...)
	}
	m, err := Merge(parts)
	if err != nil {
		return nil, err
	}
	m.Target = cfg.Target
	if len(targets) > 0 {
		m.TargetPID, m.TargetPIDs = targets[0], targets
	}
	if cfg.Mode == ModeIdle && len(targets) > 0 && m.Sessions > 0 {
		m.TargetRSSBefore, m.TargetRSSAfter = rssBefore, rssAfter
		m.TargetRSSPerSession = (float64(rssAfter) - float64(rssBefore)) / float64(m.Sessions)
	}
	return m, errors.Join(errs...)
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// RunSinkProcs runs n sink processes (this binary, `sink` with args plus
// --listen) on one SO_REUSEPORT address until ctx ends, then stops them
// (SIGTERM) and returns their counters summed. ready is called with the
// address once every child listens.
func RunSinkProcs(ctx context.Context, cfg SinkConfig, n int, args []string, ready func(addr string)) (SinkStats, error) {
	var total SinkStats
	if cfg.Balance {
		return total, fmt.Errorf("%w: --balance accepts on one socket: it cannot be shared by --procs", ErrBadConfig)
	}
	addr, err := resolveListen(cfg.Listen)
	if err != nil {
		return total, err
	}
	type kid struct {
		cmd *exec.Cmd
		out bytes.Buffer
		up  chan struct{}
	}
	kids := make([]*kid, n)
	stopAll := func() {
		for _, k := range kids {
			if k != nil {
				_ = k.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
	}
	for i := range n {
		k := &kid{up: make(chan struct{})}
		k.cmd = exec.Command(selfExe, append(append([]string{"sink"}, args...), "--listen="+addr, "--json")...)
		k.cmd.Args[0] = os.Args[0]
		pr, pw, err := os.Pipe()
		if err != nil {
			stopAll()
			return total, err
		}
		k.cmd.Stdout, k.cmd.Stderr = pw, os.Stderr
		if err := k.cmd.Start(); err != nil {
			pw.Close()
			pr.Close()
			stopAll()
			return total, fmt.Errorf("loadtest: start sink %d: %w", i, err)
		}
		pw.Close()
		kids[i] = k
		go func() {
			defer pr.Close()
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "sink listening on ") {
					close(k.up)
					continue
				}
				k.out.WriteString(line + "\n")
			}
		}()
	}
	for _, k := range kids {
		select {
		case <-k.up:
		case <-ctx.Done():
		}
	}
	if ctx.Err() == nil && ready != nil {
		ready(addr)
	}
	<-ctx.Done()
	stopAll()
	var errs []error
	for i, k := range kids {
		if err := k.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("sink %d: %w", i, err))
		}
		var st SinkStats
		if err := json.Unmarshal(bytes.TrimSpace(lastLine(k.out.Bytes())), &st); err != nil {
			errs = append(errs, fmt.Errorf("sink %d counters: %w", i, err))
			continue
		}
		total.Accepted += st.Accepted
		total.Closed += st.Closed
		total.BytesIn += st.BytesIn
		total.BytesOut += st.BytesOut
	}
	return total, errors.Join(errs...)
}
