package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// testHookIdleHeld, if set, is called once all idle sessions are open and
// before any is closed.
var testHookIdleHeld func()

// idle opens Sessions connections with Concurrency openers, proves each is
// relayed with one Size-byte echo, and then keeps only its raw descriptor:
// the net.Conn, its buffers and its poller registration are released, so a
// held session costs this process 4 bytes of slice plus kernel socket memory
// (which RSS does not include). The sessions are held for Duration, then
// closed.
func (r *runner) idle(ctx context.Context, res *Result) {
	n := r.cfg.Sessions
	fds := make([]int32, n)
	for i := range fds {
		fds[i] = -1
	}
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				_ = unix.Close(int(fd))
			}
		}
	}()

	targets := r.targetPIDs()
	if len(targets) > 0 {
		res.TargetPID, res.TargetPIDs = targets[0], targets
	}
	settle()
	res.SelfRSSBefore, _ = rss(os.Getpid())
	res.TargetRSSBefore = rssSum(targets)

	var next atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(r.cfg.Concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				id := next.Add(1) - 1
				if id >= uint64(n) {
					return
				}
				fd, err := r.idleOpen(ctx, id)
				if err == nil {
					fds[id] = int32(fd)
				}
			}
		}()
	}
	wg.Wait()
	res.IdleOpenTime = time.Since(start)

	opened := 0
	for _, fd := range fds {
		if fd >= 0 {
			opened++
		}
	}
	if h := testHookIdleHeld; h != nil {
		h()
	}
	if r.cfg.Held != nil {
		r.cfg.Held()
	}
	settle()
	res.SelfRSSAfter, _ = rss(os.Getpid())
	res.TargetRSSAfter = rssSum(targets)
	if opened > 0 {
		res.SelfRSSPerSession = (float64(res.SelfRSSAfter) - float64(res.SelfRSSBefore)) / float64(opened)
		if len(targets) > 0 {
			res.TargetRSSPerSession = (float64(res.TargetRSSAfter) - float64(res.TargetRSSBefore)) / float64(opened)
		}
	}
	if r.cfg.Duration > 0 {
		t := time.NewTimer(r.cfg.Duration)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// settle collects garbage and returns freed pages to the OS, so that RSS
// reflects what is live rather than when the scavenger last ran.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// idleOpen opens one session, proves it with an echo, and returns a
// duplicate of its descriptor; the Go connection is closed.
func (r *runner) idleOpen(ctx context.Context, id uint64) (fd int, err error) {
	o := outcome{began: time.Now()}
	var ct, rtt time.Duration
	var sent, rcvd uint64
	defer func() {
		if ctx.Err() == nil {
			o.connect, o.rtt, o.sent, o.rcvd, o.err = ct, rtt, sent, rcvd, err
			r.rec.end(&o)
		}
	}()
	c, ct, err := r.conn.dial(ctx)
	if err != nil {
		return -1, fmt.Errorf("connect %s: %w", r.cfg.Target, err)
	}
	defer c.Close()
	o.local = localAddr(c)
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	buf := *bp
	_ = c.SetDeadline(time.Now().Add(r.cfg.IOTimeout))
	if b := r.cfg.ExpectBanner; b != "" {
		if err = readExact(c, buf[2*r.cfg.Size:], []byte(b)); err != nil {
			return -1, fmt.Errorf("banner: %w", err)
		}
		rcvd += uint64(len(b))
	}
	out, in := buf[:r.cfg.Size], buf[r.cfg.Size:2*r.cfg.Size]
	fillSession(out, id)
	t0 := time.Now()
	m, err := c.Write(out)
	sent += uint64(m)
	if err != nil {
		return -1, fmt.Errorf("write: %w", err)
	}
	m, err = io.ReadFull(c, in)
	rcvd += uint64(m)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: %v", ErrShort, err)
		}
		return -1, fmt.Errorf("read: %w", err)
	}
	rtt = time.Since(t0)
	if !bytes.Equal(in, out) {
		return -1, ErrMismatch
	}
	return dupFD(c)
}

// dupFD duplicates c's descriptor (close-on-exec). The duplicate shares the
// socket, so closing c afterwards leaves the session open.
func dupFD(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	return fd, nil
}

// targetPIDs is PID and PIDs, positive and deduplicated.
func (r *runner) targetPIDs() []int {
	var out []int
	seen := map[int]bool{}
	for _, p := range append([]int{r.cfg.PID}, r.cfg.PIDs...) {
		if p > 0 && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// rssSum is the summed RSS of pids; a process that cannot be read counts 0.
func rssSum(pids []int) uint64 {
	var sum uint64
	for _, p := range pids {
		v, _ := rss(p)
		sum += v
	}
	return sum
}

// rss is the resident set size of process pid in bytes, from
// /proc/PID/statm (second field, in pages).
func rss(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("loadtest: /proc/%d/statm: %q", pid, b)
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("loadtest: /proc/%d/statm: %w", pid, err)
	}
	return pages * uint64(os.Getpagesize()), nil
}
