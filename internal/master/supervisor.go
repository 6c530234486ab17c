package master

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Config configures a Supervisor.
type Config struct {
	// Exe is the worker binary; "" = /proc/self/exe (this very binary, even
	// if the file on disk was replaced since).
	Exe  string
	Args []string // the worker's arguments, e.g. ["worker"]
	Env  []string // nil = this process's environment
	// Workers is how many worker processes to keep running (≥ 1).
	Workers int
	// Hello builds worker w's first message and the fds to send with it
	// (they stay the master's). Called under the supervisor's lock, so it
	// never interleaves with an Update.
	Hello func(w int) (Msg, []int)
	// Exited is called once worker w's process has ended, before any
	// replacement starts (the master zeroes its row of the session table).
	Exited func(w, pid int, err error)
	Log    *zap.Logger
	// BackoffMin and BackoffMax bound the delay before a worker that exited
	// is started again: BackoffMin after one that had been ready for
	// StableAfter, doubling with each further exit in a row. Defaults 50ms,
	// 10s, 10s.
	BackoffMin, BackoffMax, StableAfter time.Duration
	// GiveUp is how many worker starts may fail while no worker has ever
	// become ready before the supervisor reports itself dead (a binary or
	// config that cannot work: exiting beats restarting forever). Default 5.
	GiveUp int
	// Stdout and Stderr of the workers; nil = the master's.
	Stdout, Stderr *os.File
}

// WorkerStatus is one worker slot as Status reports it.
type WorkerStatus struct {
	Index    int
	PID      int // 0 while none runs
	Ready    bool
	Restarts uint64 // starts after the first
	Since    time.Time
}

// Supervisor keeps Config.Workers worker processes running, each with a
// control socket, and restarts one that exits (with back-off) until Stop.
type Supervisor struct {
	cfg  Config
	log  *zap.Logger
	stop chan struct{}
	dead chan error
	wg   sync.WaitGroup

	mu        sync.Mutex
	slots     []*slot
	stopping  bool
	everReady bool
	failures  int // starts that ended before ready, while none was ever ready
	readyCh   chan struct{}
}

type slot struct {
	idx      int
	restarts uint64
	cur      *proc // nil between processes
}

type proc struct {
	cmd     *exec.Cmd
	conn    *Conn
	pid     int
	ready   bool
	since   time.Time
	replies chan Msg
	exited  chan struct{}
	failed  string // the worker's own account of a failed start
}

// New checks cfg; Start runs the workers.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("master: %d workers", cfg.Workers)
	}
	if cfg.Hello == nil {
		return nil, errors.New("master: Config.Hello is required")
	}
	if cfg.Exe == "" {
		cfg.Exe = "/proc/self/exe"
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 50 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.StableAfter <= 0 {
		cfg.StableAfter = 10 * time.Second
	}
	if cfg.GiveUp <= 0 {
		cfg.GiveUp = 5
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	s := &Supervisor{cfg: cfg, log: log, stop: make(chan struct{}), dead: make(chan error, 1), readyCh: make(chan struct{}, 1)}
	for i := range cfg.Workers {
		s.slots = append(s.slots, &slot{idx: i})
	}
	return s, nil
}

// Start starts every worker and returns; AllReady and Dead say how it went.
func (s *Supervisor) Start() {
	for _, sl := range s.slots {
		s.wg.Add(1)
		go s.keep(sl)
	}
}

// Dead delivers an error when the workers cannot be kept running at all:
// GiveUp starts failed and none was ever ready.
func (s *Supervisor) Dead() <-chan error { return s.dead }

// ReadyChanged is signalled (coalesced) whenever a worker becomes ready or
// stops being ready.
func (s *Supervisor) ReadyChanged() <-chan struct{} { return s.readyCh }

func (s *Supervisor) notifyReady() {
	select {
	case s.readyCh <- struct{}{}:
	default:
	}
}

// AllReady reports whether every worker is running and ready.
func (s *Supervisor) AllReady() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sl := range s.slots {
		if sl.cur == nil || !sl.cur.ready {
			return false
		}
	}
	return true
}

// Status reports every worker slot.
func (s *Supervisor) Status() []WorkerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerStatus, len(s.slots))
	for i, sl := range s.slots {
		out[i] = WorkerStatus{Index: i, Restarts: sl.restarts}
		if p := sl.cur; p != nil {
			out[i].PID, out[i].Ready, out[i].Since = p.pid, p.ready, p.since
		}
	}
	return out
}

// keep runs worker slot sl's processes one after another until Stop.
func (s *Supervisor) keep(sl *slot) {
	defer s.wg.Done()
	inARow := 0
	for first := true; ; first = false {
		if !first {
			s.mu.Lock()
			sl.restarts++
			s.mu.Unlock()
		}
		wasReady, ranFor, err := s.run(sl)
		if s.isStopping() {
			return
		}
		if wasReady && ranFor >= s.cfg.StableAfter {
			inARow = 0
		}
		delay := min(s.cfg.BackoffMin<<min(inARow, 20), s.cfg.BackoffMax)
		inARow++
		s.mu.Lock()
		giveUp := false
		if !wasReady && !s.everReady {
			s.failures++
			giveUp = s.failures >= s.cfg.GiveUp
		}
		s.mu.Unlock()
		if giveUp {
			select {
			case s.dead <- fmt.Errorf("master: %d worker starts failed and no worker ever became ready; last: %w", s.cfg.GiveUp, err):
			default:
			}
			return
		}
		lvl := s.log.Warn
		if inARow > 3 {
			lvl = s.log.Error // a crash loop: say so louder, the back-off keeps it slow
		}
		lvl("worker exited; restarting", zap.Int("worker", sl.idx), zap.Error(err),
			zap.Bool("was_ready", wasReady), zap.Duration("ran", ranFor),
			zap.Int("exits_in_a_row", inARow), zap.Duration("restart_in", delay))
		select {
		case <-time.After(delay):
		case <-s.stop:
			return
		}
	}
}

func (s *Supervisor) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// run starts one process in slot sl and returns when it has exited.
func (s *Supervisor) run(sl *slot) (wasReady bool, ranFor time.Duration, err error) {
	conn, child, err := Pair()
	if err != nil {
		return false, 0, err
	}
	defer conn.Close()
	cmd := exec.Command(s.cfg.Exe, s.cfg.Args...)
	cmd.Args[0] = os.Args[0] // ps shows "relayd worker", not /proc/self/exe
	cmd.Env = s.cfg.Env
	cmd.Stdout, cmd.Stderr = s.cfg.Stdout, s.cfg.Stderr
	cmd.ExtraFiles = []*os.File{child} // fd 3 in the worker
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		child.Close()
		return false, 0, errors.New("stopping")
	}
	err = cmd.Start()
	child.Close()
	if err != nil {
		s.mu.Unlock()
		return false, 0, fmt.Errorf("master: start worker %d: %w", sl.idx, err)
	}
	p := &proc{cmd: cmd, conn: conn, pid: cmd.Process.Pid, since: time.Now(), replies: make(chan Msg, 4), exited: make(chan struct{})}
	sl.cur = p
	// The hello goes out under the lock, so that an Update either came
	// before it (and Hello has the new state) or sends after it.
	msg, fds := s.cfg.Hello(sl.idx)
	err = conn.Send(msg, fds)
	s.mu.Unlock()
	if err != nil {
		_ = cmd.Process.Kill()
	}
	s.log.Info("worker started", zap.Int("worker", sl.idx), zap.Int("pid", p.pid))
	s.read(sl, p)
	werr := cmd.Wait()
	s.mu.Lock()
	wasReady, ranFor = p.ready, time.Since(p.since)
	sl.cur = nil
	close(p.exited)
	s.mu.Unlock()
	s.notifyReady()
	if p.failed != "" {
		werr = fmt.Errorf("%s (%v)", p.failed, werr)
	} else if werr == nil {
		werr = errors.New("exited with status 0")
	}
	if s.cfg.Exited != nil {
		s.cfg.Exited(sl.idx, p.pid, werr)
	}
	return wasReady, ranFor, werr
}

// read handles p's messages until its control socket closes (it exited).
func (s *Supervisor) read(sl *slot, p *proc) {
	for {
		m, fds, err := p.conn.Recv()
		closeAll(fds) // workers send no sockets
		if err != nil {
			return
		}
		switch m.Type {
		case MsgReady:
			s.mu.Lock()
			p.ready = true
			s.everReady = true
			s.mu.Unlock()
			s.log.Info("worker ready", zap.Int("worker", sl.idx), zap.Int("pid", p.pid))
			s.notifyReady()
		case MsgReloaded:
			select {
			case p.replies <- m:
			default:
			}
		case MsgFailed:
			p.failed = m.Error
		}
	}
}

// Update runs apply under the lock (new state: what Hello builds from now
// on), then sends each running worker the message build returns, and waits
// until every one of them replied MsgReloaded or exited, or timeout. It
// returns the failures by worker.
func (s *Supervisor) Update(apply func(), build func(w int) (Msg, []int), timeout time.Duration) map[int]error {
	errs := map[int]error{}
	type wait struct {
		w int
		p *proc
	}
	var waits []wait
	s.mu.Lock()
	apply()
	for _, sl := range s.slots {
		p := sl.cur
		if p == nil {
			continue // a replacement starting later gets the new state in its hello
		}
		msg, fds := build(sl.idx)
		if err := p.conn.Send(msg, fds); err != nil {
			errs[sl.idx] = err
			continue
		}
		waits = append(waits, wait{sl.idx, p})
	}
	s.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, w := range waits {
		select {
		case m := <-w.p.replies:
			if m.Error != "" {
				errs[w.w] = errors.New(m.Error)
			}
		case <-w.p.exited:
			// It exited with the message unread or half applied: its
			// replacement starts from the new state.
		case <-deadline.C:
			errs[w.w] = fmt.Errorf("no reply within %s", timeout)
			deadline.Reset(0)
		}
	}
	return errs
}

// Stop ends the workers: each is sent MsgDrain (and SIGTERM, for one that
// is still starting), none is restarted, and any still running at deadline
// is killed (SIGKILL). It returns once every worker has exited, with the
// number it had to kill.
func (s *Supervisor) Stop(deadline time.Time) (killed int) {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.stop)
	}
	var procs []*proc
	for _, sl := range s.slots {
		if p := sl.cur; p != nil {
			procs = append(procs, p)
			_ = p.conn.Send(Msg{Type: MsgDrain}, nil)
			if !p.ready {
				_ = p.cmd.Process.Signal(os.Interrupt)
			}
		}
	}
	s.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-timer.C:
			timer.Reset(0)
			s.log.Warn("worker still draining at the deadline; killing it", zap.Int("pid", p.pid))
			_ = p.cmd.Process.Kill()
			killed++
			<-p.exited
		}
	}
	s.wg.Wait()
	return killed
}
