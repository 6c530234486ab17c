//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"sync"
	"time"

	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/panjf2000/gnet/v2/pkg/queue"

	"github.com/relayd/relayd/timeout"
	"golang.org/x/sys/unix"
)

// ErrStopped is returned by Post after Stop.
var ErrStopped = errors.New("evloop: stopped")

// Handler receives every I/O event of an fd the owner registered. It runs on
// the loop goroutine and must not block.
type Handler func(fd int, ev netpoll.IOEvent)

// Loop is one event loop. Create it with New, run it with Run on the goroutine
// that will own it, end it with Stop.
type Loop struct {
	poller  *netpoll.Poller
	wheel   *timeout.Wheel
	handler Handler
	tick    time.Duration
	now     time.Time
	clock   func() time.Time // time.Now, or a test's injected clock
	onTick  func(now time.Time)
	ticker  ticker
	alarm   ticker              // one-shot, finer than the tick (EnableAlarm); fd 0 until enabled
	onAlarm func(now time.Time) // runs when the alarm expires

	// Closing an fd is deferred to the next task phase (CloseAfterRound):
	// gnet's Polling has no end-of-batch hook, and an fd number freed in the
	// middle of an event batch could be handed out again (by accept or
	// socket) in the same batch while a stale event for the old socket is
	// still queued in it.
	toClose     []int
	closePosted bool
	flushF      func(any) error

	// Tasks posted from any goroutine wait here; gnet's task queue carries
	// only one wake-up at a time (runTasks). Own queue, because gnet's
	// Polling drops whatever is queued behind the task that stops it, and a
	// dropped task can hold an fd (a connect result) or a counter (a session
	// handed over): after Run's polling ends, closed is set and what is left
	// still runs, and Post fails from then on.
	mu       sync.Mutex // guards tasks, woken, closed
	tasks    []task
	woken    bool // a runTasks wake-up is queued in gnet and has not started
	closed   bool // Run's polling has ended: Post refuses
	spare    []task
	runTaskF func(any) error

	stopOnce sync.Once
	stopped  chan struct{} // closed once Run has returned
}

type task struct {
	fn  func(any) error
	arg any
}

// New opens a poller and a tick source. tick is the wheel resolution (≤ 0:
// 10 ms). handler is called for every event on a registered fd other than the
// loop's own; onTick, if not nil, runs after the wheel has advanced.
func New(tick time.Duration, handler Handler, onTick func(now time.Time)) (*Loop, error) {
	return NewWithClock(tick, handler, onTick, nil)
}

// NewWithClock is New with the loop's clock injected (nil: time.Now). Every
// "now" of the loop — Now, Refresh, what the wheel is advanced to — comes
// from it, so a test that owns the clock decides when a timer is due: it
// moves its clock and runs Tick through Post, and a timer fires then, not
// when the machine gets round to it. The timerfd still paces the ticks.
func NewWithClock(tick time.Duration, handler Handler, onTick func(now time.Time), clock func() time.Time) (*Loop, error) {
	if tick <= 0 {
		tick = 10 * time.Millisecond
	}
	if clock == nil {
		clock = time.Now
	}
	p, err := netpoll.OpenPoller()
	if err != nil {
		return nil, fmt.Errorf("evloop: open poller: %w", err)
	}
	now := clock()
	l := &Loop{
		clock:   clock,
		poller:  p,
		wheel:   timeout.New(tick, 4096, now),
		handler: handler,
		tick:    tick,
		now:     now,
		onTick:  onTick,
		stopped: make(chan struct{}),
	}
	l.flushF = func(any) error { l.FlushCloses(); return nil }
	l.runTaskF = l.runTasks
	if err := l.ticker.open(l); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("evloop: tick source: %w", err)
	}
	if onTick == nil {
		// Tick only while a timer is armed: an idle loop (no sessions, no
		// connects in flight) then costs no wake-ups at all.
		l.wheel.OnArm(func() { l.ticker.arm(l.tick) })
		l.ticker.arm(0)
	}
	return l, nil
}

// Poller returns the poller, for registering fds (AddRead, AddWrite, Delete…).
// Loop goroutine only.
func (l *Loop) Poller() *netpoll.Poller { return l.poller }

// Wheel returns the loop's timing wheel. Loop goroutine only.
func (l *Loop) Wheel() *timeout.Wheel { return l.wheel }

// Now returns the loop's clock, refreshed every tick and by Refresh: cheap
// enough to call per event, accurate to one tick. Loop goroutine only.
func (l *Loop) Now() time.Time { return l.now }

// Refresh re-reads the wall clock and returns it. Loop goroutine only.
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
	wake := !l.woken
	l.woken = true
	l.mu.Unlock()
	if wake {
		// One wake-up for any number of posts until the loop takes them:
		// one eventfd write and one gnet queue node per batch.
		return l.poller.Trigger(queue.HighPriority, l.runTaskF, nil)
	}
	return nil
}

// errStop is the stop task's result; runTasks turns it into gnet's shutdown
// error after the whole batch has run.
var errStop = errors.New("evloop: stop")

// runTasks runs every task posted so far, on the loop goroutine.
func (l *Loop) runTasks(any) error {
	l.mu.Lock()
	batch := l.tasks
	l.tasks, l.spare = l.spare[:0], nil
	l.woken = false
	l.mu.Unlock()
	stop := false
	for i := range batch {
		if errors.Is(batch[i].fn(batch[i].arg), errStop) {
			stop = true
		}
		batch[i] = task{}
	}
	l.mu.Lock()
	if l.spare == nil {
		l.spare = batch[:0]
	}
	l.mu.Unlock()
	if stop {
		return gerrors.ErrEngineShutdown
	}
	return nil
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

// Run polls until Stop. It returns nil after Stop and the poller's error
// otherwise. The poller is closed when Run returns.
func (l *Loop) Run() error {
	defer close(l.stopped)
	defer l.poller.Close() //nolint:errcheck
	defer l.ticker.close()
	defer l.closeAlarm()
	defer l.FlushCloses() // the poller is done: nothing can race any more
	defer l.drainTasks()  // before the closes and the poller's close: tasks may register or close fds
	err := l.poller.Polling(func(fd int, ev netpoll.IOEvent, _ netpoll.IOFlags) error {
		if l.ticker.is(fd) {
			l.ticker.drain()
			l.doTick()
			return nil
		}
		if l.onAlarm != nil && l.alarm.is(fd) {
			l.alarm.drain()
			l.onAlarm(l.Refresh())
			return nil
		}
		l.handler(fd, ev)
		return nil
	})
	if errors.Is(err, gerrors.ErrEngineShutdown) {
		return nil
	}
	return err
}

// EnableAlarm gives the loop a one-shot timer finer than its tick (a second
// timerfd): Alarm arms it, fn runs on the loop when it expires. For a
// deadline the wheel's tick is too coarse for — the connector's connect
// pacing releases starts every few hundred microseconds — without making
// the wheel tick that fast for every timer (an idle loop with one armed
// timer would wake a thousand times a second). Call before Run.
func (l *Loop) EnableAlarm(fn func(now time.Time)) error {
	if err := l.alarm.open(l); err != nil {
		return fmt.Errorf("evloop: alarm: %w", err)
	}
	l.alarm.once(0)
	l.alarm.drain() // an expiry of open's periodic arming, if one slipped in
	l.onAlarm = fn
	return nil
}

// Alarm arms the alarm to expire after d (re-arming replaces the previous
// expiry; d ≤ 0 fires at the next poll). Loop goroutine only, after
// EnableAlarm.
func (l *Loop) Alarm(d time.Duration) { l.alarm.once(max(d, time.Microsecond)) }

func (l *Loop) closeAlarm() {
	if l.onAlarm != nil {
		l.alarm.close()
	}
}

// Tick advances the wheel to the clock's now and runs what is due, as a tick
// of the timerfd does. Loop goroutine only (a test posts it after moving an
// injected clock).
func (l *Loop) Tick() { l.doTick() }

func (l *Loop) doTick() {
	now := l.Refresh()
	l.wheel.Advance(now)
	if l.onTick != nil {
		l.onTick(now)
	} else if l.wheel.Len() == 0 {
		l.ticker.arm(0)
	}
}

// Stop makes Run return after the current poll round. Safe to call from any
// goroutine, more than once, and before Run.
func (l *Loop) Stop() {
	l.stopOnce.Do(func() {
		_ = l.PostFunc(func(any) error { return errStop }, nil)
	})
}

// Done is closed when Run has returned.
func (l *Loop) Done() <-chan struct{} { return l.stopped }

// CloseAfterRound closes fd after the events of the current poll round have
// all been handled: in the task phase that follows (the close is a posted
// task, and gnet runs tasks after the I/O events of a round once the wake-up
// eventfd is in it, so never in the middle of the batch that freed the fd). The caller must already have removed fd from the poller
// and from its own fd table: until the close, the kernel cannot reuse the
// number, so no later event can reach a new socket that got it. Loop
// goroutine only.
func (l *Loop) CloseAfterRound(fd int) {
	l.toClose = append(l.toClose, fd)
	if !l.closePosted {
		l.closePosted = true
		if err := l.PostFunc(l.flushF, nil); err != nil {
			l.FlushCloses() // stopping: no event round is left to race with
		}
	}
}

// FlushCloses closes every fd deferred by CloseAfterRound now. Loop
// goroutine only (or after Run has returned).
func (l *Loop) FlushCloses() {
	for _, fd := range l.toClose {
		_ = unix.Close(fd)
	}
	l.toClose = l.toClose[:0]
	l.closePosted = false
}
