//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/nbsys"
	"github.com/relayd/relayd/timeout"
	"golang.org/x/sys/unix"
)

// ErrStopped is returned by Post after Stop.
var ErrStopped = errors.New("evloop: stopped")

// Handler receives every I/O event of an fd the owner registered. It runs on
// the loop goroutine and must not block.
type Handler func(fd int, ev IOEvent)

// spins is how many times a loop that found no event yields the processor
// and polls again before it sleeps in epoll_wait. Measured on 2 vCPUs with
// 50 keep-alive ping-pong sessions: 3 yields cut the relay's context
// switches per request from ~0.40 to ~0.25-0.30 (HAProxy: 0.21) at the
// same CPU per request; an idle loop pays them once per wake-up.
const spins = 3

// maxEvents is the epoll batch: events taken per poll round.
const maxEvents = 256

// Loop is one event loop. Create it with New, run it with Run on the goroutine
// that will own it, end it with Stop.
type Loop struct {
	epfd    int
	wakefd  int // eventfd: Post's wake-up while the loop sleeps
	events  []unix.EpollEvent
	wheel   *timeout.Wheel
	handler Handler
	tick    time.Duration
	now     time.Time
	clock   func() time.Time // time.Now, or a test's injected clock
	fixed   bool             // injected clock: wake every tick, the wheel's deadlines are not wall time

	alarm   ticker              // one-shot, finer than the wheel (EnableAlarm); fd 0 until enabled
	onAlarm func(now time.Time) // runs when the alarm expires

	// Closing an fd waits for the end of the event batch (CloseAfterRound):
	// an fd number freed in the middle of a batch could be handed out again
	// (by accept or socket) in the same batch while a stale event for the
	// old socket is still queued in it.
	toClose []int

	// Tasks posted from any goroutine wait here. The loop takes them once
	// per round; a poster writes the eventfd only when the loop sleeps (or
	// is about to), so posts to a busy loop cost no system call.
	mu       sync.Mutex // guards tasks, sleeping, woken, closed
	tasks    []task
	spare    []task
	sleeping bool        // the loop has found no task and is about to wait, or waits
	woken    bool        // an eventfd write is outstanding
	closed   bool        // Run's polling has ended: Post refuses
	stopping atomic.Bool // Stop was called: Run returns after this round (read once per round, no lock)

	rounds int // poll rounds so far (tests: an idle loop must not spin)

	given atomic.Int64 // sleeps that gave the P away (tests)

	stopOnce sync.Once
	stopped  chan struct{} // closed once Run has returned
	wakeBuf  [8]byte
}

type task struct {
	fn  func(any) error
	arg any
}

// New opens a poller. tick is the wheel resolution (≤ 0: 10 ms). handler is
// called for every event on a registered fd other than the loop's own.
func New(tick time.Duration, handler Handler) (*Loop, error) {
	return NewWithClock(tick, handler, nil)
}

// NewWithClock is New with the loop's clock injected (nil: time.Now). Every
// "now" of the loop — Now, Refresh, what the wheel is advanced to — comes
// from it, so a test that owns the clock decides when a timer is due: it
// moves its clock and runs Tick through Post, and a timer fires then, not
// when the machine gets round to it. With an injected clock the loop still
// wakes once per tick while a timer is armed and advances the wheel to the
// injected now.
func NewWithClock(tick time.Duration, handler Handler, clock func() time.Time) (*Loop, error) {
	if tick <= 0 {
		tick = 10 * time.Millisecond
	}
	l := &Loop{clock: clock, fixed: clock != nil, handler: handler, tick: tick,
		events: make([]unix.EpollEvent, maxEvents), stopped: make(chan struct{})}
	if clock == nil {
		l.clock = time.Now
	}
	l.now = l.clock()
	l.wheel = timeout.New(tick, 4096, l.now)
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("evloop: %w", os.NewSyscallError("epoll_create1", err))
	}
	if l.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(l.epfd)
		return nil, fmt.Errorf("evloop: %w", os.NewSyscallError("eventfd", err))
	}
	if err = l.Add(l.wakefd, ReadEvents); err != nil {
		unix.Close(l.wakefd)
		unix.Close(l.epfd)
		return nil, fmt.Errorf("evloop: %w", err)
	}
	return l, nil
}

// Wheel returns the loop's timing wheel. Loop goroutine only.
func (l *Loop) Wheel() *timeout.Wheel { return l.wheel }

// Now returns the loop's clock as of the start of the current poll round:
// cheap enough to call per event. Loop goroutine only.
func (l *Loop) Now() time.Time { return l.now }

// Refresh re-reads the clock and returns it. Loop goroutine only.
func (l *Loop) Refresh() time.Time {
	l.now = l.clock()
	return l.now
}

// Post runs fn(arg) on the loop goroutine, in the task phase of a poll round.
// Safe from any goroutine, including the loop's own. fn must not block. A
// task accepted by Post always runs, also when Stop comes first (the loop
// runs what is queued before Run returns); once Run is done, Post returns
// ErrStopped and fn does not run.
func (l *Loop) Post(fn func(arg any), arg any) error {
	return l.PostFunc(func(a any) error { fn(a); return nil }, arg)
}

// PostFunc is Post for a task that needs no closure allocation: fn is a
// function value bound once (a top-level func or a method value), arg is
// passed through. fn's error is ignored.
func (l *Loop) PostFunc(fn func(arg any) error, arg any) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrStopped
	}
	l.tasks = append(l.tasks, task{fn, arg})
	wake := l.sleeping && !l.woken
	if wake {
		l.woken = true
	}
	l.mu.Unlock()
	if wake {
		l.wake()
	}
	return nil
}

// wake makes a sleeping (or about to sleep) loop return from its wait.
func (l *Loop) wake() {
	var one = [8]byte{1}
	// EAGAIN means the counter is full, so the loop is woken anyway.
	_, _ = nbsys.Write(l.wakefd, one[:])
}

// takeTasks returns the posted tasks, or with none marks the loop as going
// to sleep (under the same lock, so a Post that comes later sees it and
// wakes the loop).
func (l *Loop) takeTasks(sleepIfNone bool) []task {
	l.mu.Lock()
	batch := l.tasks
	if len(batch) > 0 {
		l.tasks, l.spare = l.spare[:0], nil
	} else if sleepIfNone && !l.stopping.Load() {
		l.sleeping = true
	}
	l.mu.Unlock()
	return batch
}

// runTasks runs batch on the loop goroutine and keeps its array for reuse.
func (l *Loop) runTasks(batch []task) {
	for i := range batch {
		_ = batch[i].fn(batch[i].arg)
		batch[i] = task{}
	}
	l.mu.Lock()
	if l.spare == nil {
		l.spare = batch[:0]
	}
	l.mu.Unlock()
}

// Run polls until Stop. It returns nil after Stop and the poller's error
// otherwise. The poller is closed when Run returns.
//
// One round: wait for events (or the next timer deadline), handle every
// event, close the fds the handlers released (CloseAfterRound), run the
// posted tasks, fire what is due on the wheel and the alarm.
func (l *Loop) Run() (err error) {
	defer close(l.stopped)
	defer l.closeAll()
	defer l.FlushCloses() // the poller is done: nothing can race any more
	defer l.drainTasks()  // before the closes: tasks may register or close fds
	for {
		n := pollNow(l.epfd, l.events)
		for i := 0; n == 0 && i < spins; i++ {
			runtime.Gosched()
			n = pollNow(l.epfd, l.events)
		}
		if n == 0 {
			if batch := l.takeTasks(true); len(batch) > 0 {
				l.runTasks(batch)
				l.FlushCloses()
				continue
			}
			if l.stopping.Load() {
				return nil
			}
			n, err = l.sleep()
			l.mu.Lock()
			l.sleeping = false
			l.mu.Unlock()
			if err != nil {
				return err
			}
		}
		l.Refresh()
		l.rounds++
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == l.wakefd:
				_, _ = nbsys.Read(l.wakefd, l.wakeBuf[:])
				l.mu.Lock()
				l.woken = false
				l.mu.Unlock()
			case l.onAlarm != nil && l.alarm.is(fd):
				l.alarm.drain()
				l.onAlarm(l.now)
			default:
				l.handler(fd, ev.Events)
			}
		}
		if batch := l.takeTasks(false); len(batch) > 0 {
			l.runTasks(batch)
		}
		if l.wheel.Len() > 0 {
			l.doTick()
		}
		// Events, tasks and timers of this round have run: whatever they
		// released can be closed (nothing of this batch is left to race).
		l.FlushCloses()
		if l.stopping.Load() {
			return nil
		}
	}
}

// holdFor is how long a loop going to sleep keeps its P (in milliseconds,
// epoll's unit) before it gives it away: see sleep.
const holdFor = 1

// sleep waits in epoll_wait for events or the next timer deadline, in two
// steps. First up to holdFor with the loop's P kept (syscall.Syscall6): a
// busy loop's next event is usually that close, and returning with the P
// kept is a CAS, no scheduler work. Then, if nothing came, for the rest of
// the time with the P given away (pollBlock's entersyscallblock): a P held
// through a long sleep is one sysmon retakes after 20 µs and polls for at
// its fastest (poll_linux.go says why that costs). Measured against either
// step alone (rr 64 B ×50 and keep-alive ping-pong ×50, 2 vCPUs, relayd vs
// HAProxy in one run): the P kept throughout gave 1.9 context switches per
// short session, given away at once 1.2 but more per keep-alive request;
// the two steps 0.8 with keep-alive unchanged.
func (l *Loop) sleep() (int, error) {
	if to := l.timeout(); to >= 0 && to <= holdFor {
		return pollBlock(l.epfd, l.events, to, false)
	}
	n, err := pollBlock(l.epfd, l.events, holdFor, false)
	if n != 0 || err != nil {
		return n, err
	}
	l.given.Add(1)
	return pollBlock(l.epfd, l.events, l.timeout(), true)
}

// timeout is how long the loop may sleep, in epoll's milliseconds rounded
// up (never early): until the wheel's next deadline (one tick at a time
// with an injected clock), or for ever (-1).
func (l *Loop) timeout() int {
	if l.wheel.Len() == 0 {
		return -1
	}
	d := l.tick
	if !l.fixed {
		next, _ := l.wheel.Next()
		d = max(next.Sub(l.clock()), 0)
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// drainTasks runs, after polling has ended, whatever was posted and not yet
// run, and makes Post refuse from here on.
func (l *Loop) drainTasks() {
	for {
		l.mu.Lock()
		batch := l.tasks
		l.tasks = nil
		l.closed = true
		l.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for i := range batch {
			_ = batch[i].fn(batch[i].arg)
		}
	}
}

func (l *Loop) closeAll() {
	if l.onAlarm != nil {
		l.alarm.close()
	}
	_ = unix.Close(l.wakefd)
	_ = unix.Close(l.epfd)
}

// EnableAlarm gives the loop a one-shot timer finer than its wheel (a
// timerfd): Alarm arms it, fn runs on the loop when it expires. For a
// deadline the wheel's tick and epoll's millisecond timeout are too coarse
// for — the connector's connect pacing releases starts every few hundred
// microseconds. Call before Run.
func (l *Loop) EnableAlarm(fn func(now time.Time)) error {
	if err := l.alarm.open(l); err != nil {
		return fmt.Errorf("evloop: alarm: %w", err)
	}
	l.onAlarm = fn
	return nil
}

// Alarm arms the alarm to expire after d (re-arming replaces the previous
// expiry; d ≤ 0 fires at the next poll). Loop goroutine only, after
// EnableAlarm.
func (l *Loop) Alarm(d time.Duration) { l.alarm.once(max(d, time.Microsecond)) }

// Tick advances the wheel to the clock's now and runs what is due. Loop
// goroutine only (a test posts it after moving an injected clock).
func (l *Loop) Tick() { l.doTick() }

func (l *Loop) doTick() { l.wheel.Advance(l.Refresh()) }

// Stop makes Run return after the current poll round. Safe to call from any
// goroutine, more than once, and before Run.
func (l *Loop) Stop() {
	l.stopOnce.Do(func() {
		l.stopping.Store(true)
		l.wake()
	})
}

// Done is closed when Run has returned.
func (l *Loop) Done() <-chan struct{} { return l.stopped }

// CloseAfterRound closes fd once every event of the current poll round has
// been handled. The caller must already have removed fd from the poller and
// from its own fd table: until the close, the kernel cannot reuse the
// number, so no later event can reach a new socket that got it. Loop
// goroutine only.
func (l *Loop) CloseAfterRound(fd int) { l.toClose = append(l.toClose, fd) }

// FlushCloses closes every fd deferred by CloseAfterRound now. Loop
// goroutine only (or after Run has returned).
func (l *Loop) FlushCloses() {
	for _, fd := range l.toClose {
		_ = nbsys.Close(fd)
	}
	l.toClose = l.toClose[:0]
}
