//go:build linux

package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// defaultBacklog is Config.Backlog's default.
const defaultBacklog = 4096

// ErrServerClosed is returned by Start and AddListener after Shutdown or Close.
var ErrServerClosed = errors.New("relay: server closed")

// listener is one configured listening address, shared by the loops that
// hold a socket for it.
type listener struct {
	cfg         ListenerConfig                 // as added: Name and Addr never change
	lc          atomic.Pointer[ListenerConfig] // the current settings (Update swaps them)
	addr        netip.AddrPort                 // bound address (port resolved)
	ups         atomic.Pointer[upstreams]
	groups      atomic.Pointer[groups] // route groups (edge_peek.go); nil without routes
	maxSessions atomic.Int64
	st          *listenerCounters // its own allocation: Server.retired keeps it alone
	socks       []*lsock
}

func (ln *listener) release() { ln.st.active.Add(-1) }

// SharedCaps counts sessions against caps that several processes share (see
// internal/shm): Acquire admits one session under the global cap and the
// cap of key (a listener's CapKey; 0 = the global one only) or counts
// nothing and refuses; Release uncounts one. Both are called on the relay
// loops, so they must not block.
type SharedCaps interface {
	Acquire(key int) bool
	Release(key int)
}

// config returns the listener's current settings; a session keeps the one
// it started with.
func (ln *listener) config() *ListenerConfig { return ln.lc.Load() }

// Server is the relay stage: a fixed set of event loops that accept clients,
// obtain upstreams from the Dialer, and relay bytes both ways.
type Server struct {
	cfg       Config
	loops     []*loop
	bufPool   sync.Pool
	bufGets   atomic.Uint64 // buffers taken from bufPool (trim.go)
	trims     atomic.Uint64 // trims run (trim.go)
	stopTrim  chan struct{}
	trimQuiet time.Duration // Config.TrimAfter; ≤ 0: no trimmer

	mu        sync.Mutex // guards listeners, retired, started, closed
	listeners []*listener
	retired   []*listenerCounters // of listeners removed at run time (counters never go down)
	started   bool
	closed    bool

	active         atomic.Int64 // live sessions, for MaxSessions
	maxSessions    atomic.Int64
	idle, fin      atomic.Int64 // current IdleTimeout and FinTimeout (reloadable)
	connectTimeout atomic.Int64 // per connect attempt; 0 = the Dialer's default
	accessEvery    atomic.Int64 // interim access records' interval, ns; 0 = off (access.go)
	accessStart    atomic.Bool  // start access records
	handoff        atomic.Bool  // listening sockets are shared with a successor
	next           atomic.Uint64
	wg             sync.WaitGroup
	stopWG         sync.Once
	dead           chan error // a loop that stopped on its own (Dead)
}

// New builds the loops; call AddListener, then Start.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: c, dead: make(chan error, 1)}
	s.maxSessions.Store(int64(c.MaxSessions))
	s.idle.Store(int64(c.IdleTimeout))
	s.trimQuiet = c.TrimAfter
	s.fin.Store(int64(c.FinTimeout))
	s.accessEvery.Store(int64(max(c.AccessInterval, 0)))
	s.accessStart.Store(c.AccessOnConnect)
	size := c.BufferSize
	s.bufPool.New = func() any { b := make([]byte, size); return &b }
	for i := range c.Loops {
		l, err := newLoop(i, s)
		if err != nil {
			for _, l := range s.loops {
				l.ev.Stop()
			}
			s.runStopped()
			return nil, err
		}
		s.loops = append(s.loops, l)
	}
	return s, nil
}

// runStopped runs the never-started loops just long enough to close their pollers.
func (s *Server) runStopped() {
	for _, l := range s.loops {
		_ = l.ev.Run()
	}
}

func (s *Server) getBuf() *[]byte  { s.bufGets.Add(1); return s.bufPool.Get().(*[]byte) }
func (s *Server) putBuf(b *[]byte) { s.bufPool.Put(b) }

// AddListener binds lc's address: one SO_REUSEPORT socket per loop, or one
// socket on loop 0 in single-acceptor mode. It returns the bound address
// (useful with port 0). Call before Start.
func (s *Server) AddListener(lc ListenerConfig) (netip.AddrPort, error) {
	var ret *listener // set once the listener is in place
	if err := lc.validate(); err != nil {
		return netip.AddrPort{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return netip.AddrPort{}, ErrServerClosed
	}
	for _, o := range s.listeners {
		if o.cfg.Name == lc.Name {
			return netip.AddrPort{}, fmt.Errorf("relay: listener %q exists", lc.Name)
		}
	}
	ln := &listener{cfg: lc, st: &listenerCounters{name: lc.Name, edge: lc.edge.edgeCounts}}
	ln.lc.Store(&ln.cfg)
	ups, err := s.register(&lc)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer func() {
		if ret == nil {
			s.unregister(lc.Name) // the listener did not come up
			if g := ln.groups.Load(); g != nil {
				for _, n := range g.names {
					s.unregister(n)
				}
			}
		}
	}()
	g, err := s.registerGroups(&lc, nil)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ln.groups.Store(g)
	ln.ups.Store(ups)
	ln.maxSessions.Store(int64(lc.MaxSessions))
	n := 1
	if s.cfg.Reuseport {
		n = len(s.loops)
	}
	// Every inherited socket is adopted, also when there are more of them
	// than this process has loops (an upgrade to fewer loops, or from
	// reuseport to single): an inherited SO_REUSEPORT socket nobody accepts
	// on stays in the group, and the kernel keeps hashing new connections
	// onto it, where they hang. The extras go round-robin over the loops
	// (loop 0 in single mode); a loop accepts on several sockets as well as
	// one. Closing them instead would reset what waits in their queues.
	total := max(n, len(lc.FDs))
	addr := lc.Addr
	for i := range total {
		var fd int
		var bound netip.AddrPort
		var err error
		if i < len(lc.FDs) {
			fd, bound, err = adoptListener(lc.FDs[i], addr)
		} else {
			fd, bound, err = listenTCP(addr, s.cfg.Reuseport, s.cfg.Backlog)
		}
		if err != nil {
			for _, ls := range ln.socks {
				_ = unix.Close(ls.fd)
			}
			for _, fd := range lc.FDs[min(i, len(lc.FDs)):] {
				_ = unix.Close(fd) // inherited, ours since AddListener, never adopted
			}
			return netip.AddrPort{}, err
		}
		if s.cfg.NoDelay {
			setNoDelay(fd) // accepted sockets inherit it: no setsockopt per client
		}
		addr = bound // later sockets join the same port
		ln.socks = append(ln.socks, &lsock{fd: fd, ln: ln, loop: s.loops[i%n]})
	}
	ln.addr = addr
	ln.st.addr = addr
	if s.started {
		// Running loops register their socket themselves: the loop owns it.
		for _, ls := range ln.socks {
			var err error
			done := make(chan struct{})
			if perr := ls.loop.ev.Post(func(any) { err = ls.loop.addListener(ls); close(done) }, nil); perr != nil {
				err = perr
				close(done)
			}
			<-done
			if err != nil {
				return netip.AddrPort{}, fmt.Errorf("relay: register listener %s: %w", addr, err)
			}
		}
	}
	s.listeners = append(s.listeners, ln)
	ret = ln
	return addr, nil
}

// ListenerFDs returns the listening sockets of the named listener, for
// handing them to a successor process (they stay owned by this server).
func (s *Server) ListenerFDs(name string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		if ln.cfg.Name == name {
			fds := make([]int, len(ln.socks))
			for i, ls := range ln.socks {
				fds[i] = ls.fd
			}
			return fds
		}
	}
	return nil
}

// HandOff declares that the listening sockets are now shared with a
// successor process: from here on Shutdown and Close only stop this process
// accepting (they close its copies) instead of shutting the sockets down for
// everyone. Connections waiting in the accept queues go to the successor.
func (s *Server) HandOff() { s.handoff.Store(true) }

// Addrs returns the bound address of each listener by name.
func (s *Server) Addrs() map[string]netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]netip.AddrPort, len(s.listeners))
	for _, ln := range s.listeners {
		m[ln.cfg.Name] = ln.addr
	}
	return m
}

// Start runs the loops. It returns once they are polling.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.started {
		return errors.New("relay: Start called twice")
	}
	for _, ln := range s.listeners {
		for _, ls := range ln.socks {
			if err := ls.loop.addListener(ls); err != nil {
				return fmt.Errorf("relay: register listener %s: %w", ln.addr, err)
			}
		}
	}
	s.started = true
	s.stopTrim = make(chan struct{})
	if s.trimQuiet > 0 {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.trimmer(s.stopTrim, s.trimQuiet) }()
	}
	for _, l := range s.loops {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer l.pipes.closeAll() // after Run: the sessions have given theirs back
			if err := l.ev.Run(); err != nil {
				l.log.Error("relay loop died", zap.Error(err))
				select {
				case s.dead <- fmt.Errorf("relay: loop %d: %w", l.id, err):
				default:
				}
			}
		}()
	}
	return nil
}

// Dead delivers the error of the first loop that stopped on its own (its
// poller failed). Its sessions are orphaned and its share of the listening
// sockets is no longer accepted on: the owner should treat it as fatal (the
// daemon exits 1 so that its supervisor restarts it).
func (s *Server) Dead() <-chan error { return s.dead }

// admit decides whether a freshly accepted client becomes a session, and on
// which loop. The accepting loop owns fd until it hands it over.
func (s *Server) admit(l *loop, ln *listener, fd int, client netip.AddrPort) {
	ln.st.accepted.Add(1)
	if !acquire(&s.active, s.maxSessions.Load()) {
		l.reject(fd, ReasonRejectedLimit)
		ln.st.closed[ReasonRejectedLimit].Add(1)
		return
	}
	if !acquire(&ln.st.active, ln.maxSessions.Load()) {
		s.active.Add(-1)
		l.reject(fd, ReasonRejectedLimit)
		ln.st.closed[ReasonRejectedLimit].Add(1)
		return
	}
	if s.cfg.Shared != nil && !s.cfg.Shared.Acquire(ln.cfg.CapKey) {
		ln.st.active.Add(-1)
		s.active.Add(-1)
		l.reject(fd, ReasonRejectedLimit)
		ln.st.closed[ReasonRejectedLimit].Add(1)
		return
	}
	sess := &session{loop: l, ln: ln, client: client, c: endpoint{fd: fd}}
	if len(s.loops) > 1 && (!s.cfg.Reuseport || s.cfg.Balanced) {
		target := s.leastLoaded(l)
		if !s.cfg.Reuseport {
			target = s.loops[s.next.Add(1)%uint64(len(s.loops))]
		}
		if target != l {
			sess.loop = target
			target.st.queued.Add(1)
			if err := target.ev.PostFunc(target.adoptF, sess); err == nil {
				return // target owns fd from here on
			}
			target.st.queued.Add(-1)
			sess.loop = l
		}
	}
	sess.start(l.ev.Refresh())
}

func (s *Server) release(ln *listener) {
	s.active.Add(-1)
	if s.cfg.Shared != nil {
		s.cfg.Shared.Release(ln.cfg.CapKey)
	}
}

// leastLoaded is the loop with the fewest sessions, counting the ones
// handed to it and not yet adopted; l itself unless that one has fewer by
// more than an eighth of l's (at least one): a few long sessions are spread
// exactly, while many short ones, whose counts jitter, are not handed
// across threads for a difference that is gone a moment later. It reads
// each loop's counters once (atomics, no lock): two loops that accept at
// once may both pick a third, an error of one session.
func (s *Server) leastLoaded(l *loop) *loop {
	local := l.st.active.Load() + l.st.queued.Load()
	best, min := l, local
	for _, o := range s.loops {
		if n := o.st.active.Load() + o.st.queued.Load(); n < min {
			best, min = o, n
		}
	}
	if local-min < 1+local/8 {
		return l
	}
	return best
}

// acquire counts one more session in n unless that would exceed limit (≤ 0:
// no cap); it reports whether it did.
func acquire(n *atomic.Int64, limit int64) bool {
	if n.Add(1) > limit && limit > 0 {
		n.Add(-1)
		return false
	}
	return true
}

// reject closes a client that will not get a session, promptly and counted.
func (l *loop) reject(fd int, reason Reason) {
	setLingerZero(fd)
	_ = unix.Close(fd) // never registered in the poller: no stale event possible
	l.st.closed[reason].Add(1)
}

// Stats returns a snapshot of all loops' and listeners' counters.
func (s *Server) Stats() Stats {
	st := Stats{Closed: make(map[string]uint64, numReasons), AcceptErrors: make(map[string]uint64, numAcceptErrs)}
	for _, l := range s.loops {
		st.add(&l.st)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Listeners = make(map[string]ListenerStats, len(s.listeners))
	// Removed listeners still count (their sessions may run on, and
	// counters must never go down); a re-added name adds up.
	for _, lc := range s.counters() {
		ls, ok := st.Listeners[lc.name]
		if !ok {
			ls.Closed = make(map[string]uint64, numReasons)
		}
		ls.Addr = lc.addr
		ls.Active += lc.active.Load()
		ls.Accepted += lc.accepted.Load()
		ls.BytesUp += lc.bytesUp.Load()
		ls.BytesDown += lc.bytesDown.Load()
		for i := range lc.closed {
			ls.Closed[reasonNames[i]] += lc.closed[i].Load()
		}
		st.Listeners[lc.name] = ls
	}
	return st
}

// counters returns the counters of every listener, removed ones first (a
// re-added name adds up). Caller holds s.mu.
func (s *Server) counters() []*listenerCounters {
	out := append([]*listenerCounters(nil), s.retired...)
	for _, ln := range s.listeners {
		out = append(out, ln.st)
	}
	return out
}

// Update applies a new configuration to the running listener of the same
// name: upstreams, balance, tries, per-listener session cap and the edge
// settings (mode, credentials, PROXY protocol, ACL, limits, policy,
// handshake timeout). Established
// sessions keep their upstream; new sessions use the new set at once. The
// address cannot change (remove and add the listener instead).
func (s *Server) Update(lc ListenerConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		if ln.cfg.Name != lc.Name {
			continue
		}
		if !lc.Addr.IsValid() {
			lc.Addr = ln.cfg.Addr
		}
		// A fresh derived state, the listener's counters.
		lc.edge = &edgeState{edgeCounts: ln.config().edge.edgeCounts}
		if err := lc.validate(); err != nil {
			return err
		}
		if lc.Addr != ln.cfg.Addr && lc.Addr != ln.addr {
			return fmt.Errorf("relay: listener %q: address %s cannot change to %s without a restart of the listener", lc.Name, ln.cfg.Addr, lc.Addr)
		}
		// The per-source table carries over: the running limiter takes the
		// new limits in place, so a reload does not give every source a
		// fresh allowance (review C4). Only a new table shape replaces it.
		if prev := ln.config().Limiter; prev != nil && lc.Limiter != nil && prev != lc.Limiter {
			if err := prev.Reconfigure(lc.Limiter.Config()); err == nil {
				lc.Limiter = prev
			}
		}
		ups, err := s.register(&lc)
		if err != nil {
			return err
		}
		g, err := s.registerGroups(&lc, ln.groups.Load())
		if err != nil {
			return err
		}
		ln.groups.Store(g)
		ln.ups.Store(ups)
		ln.maxSessions.Store(int64(lc.MaxSessions))
		next := lc
		next.FDs = nil
		ln.lc.Store(&next)
		return nil
	}
	return fmt.Errorf("relay: no listener %q", lc.Name)
}

// RemoveListener stops accepting on the named listener; its sessions run on
// to their natural end.
func (s *Server) RemoveListener(name string) error {
	s.mu.Lock()
	var ln *listener
	for i, o := range s.listeners {
		if o.cfg.Name == name {
			ln = o
			s.listeners = append(s.listeners[:i:i], s.listeners[i+1:]...)
			s.retired = append(s.retired, ln.st)
			break
		}
	}
	started := s.started
	s.mu.Unlock()
	if ln == nil {
		return fmt.Errorf("relay: no listener %q", name)
	}
	s.unregister(name)
	if g := ln.groups.Load(); g != nil {
		for _, n := range g.names {
			s.unregister(n)
		}
	}
	if !started {
		for _, ls := range ln.socks {
			_ = unix.Shutdown(ls.fd, unix.SHUT_RD)
			_ = unix.Close(ls.fd)
		}
		return nil
	}
	s.onLoops(func(l *loop) { l.closeListenerOf(ln, true) })
	return nil
}

// SetTimeouts changes the idle and fin timeouts of every session, running
// ones included (≤ 0 keeps the current value).
func (s *Server) SetTimeouts(idle, fin time.Duration) {
	if idle > 0 {
		s.idle.Store(int64(idle))
	}
	if fin > 0 {
		s.fin.Store(int64(fin))
	}
}

// SetConnectTimeout changes the connect timeout of new sessions' attempts
// (0 = the Dialer's own default).
func (s *Server) SetConnectTimeout(d time.Duration) { s.connectTimeout.Store(int64(max(d, 0))) }

// SetMaxSessions changes the global session cap (0 = unlimited). Sessions
// over a lowered cap are not cut; new ones wait for room.
func (s *Server) SetMaxSessions(n int) { s.maxSessions.Store(int64(max(n, 0))) }

// onLoops runs fn on every loop and waits for all of them.
func (s *Server) onLoops(fn func(l *loop)) {
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Add(1)
		if err := l.ev.Post(func(any) { defer wg.Done(); fn(l) }, nil); err != nil {
			wg.Done()
		}
	}
	wg.Wait()
}

// Shutdown stops accepting at once (the listening sockets are closed, so new
// connects are refused), lets sessions finish until ctx ends, then closes the
// rest with ReasonShutdown and stops the loops. It returns ctx.Err() if
// sessions had to be cut, nil if all finished. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started := s.started
	s.closed = true
	s.mu.Unlock()
	if !started {
		return s.Close()
	}
	s.onLoops(func(l *loop) { l.closeListeners() })
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	var err error
	for s.active.Load() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tk.C:
			continue
		}
		break
	}
	_ = s.Close()
	return err
}

// Close closes listeners and every session at once (with a RST) and stops
// the loops. Safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	started := s.started
	s.closed = true
	s.mu.Unlock()
	s.stopWG.Do(func() {
		if !started {
			for _, ln := range s.listeners {
				for _, ls := range ln.socks {
					_ = unix.Close(ls.fd)
				}
			}
			for _, l := range s.loops {
				l.ev.Stop()
			}
			s.runStopped()
			return
		}
		s.onLoops(func(l *loop) {
			l.closeListeners()
			l.closeAll(ReasonShutdown)
			l.ev.FlushCloses()
		})
		for _, l := range s.loops {
			l.ev.Stop()
		}
		close(s.stopTrim)
		s.wg.Wait()
	})
	return nil
}

func (s *Server) timeouts() (idle, fin time.Duration) {
	return time.Duration(s.idle.Load()), time.Duration(s.fin.Load())
}
