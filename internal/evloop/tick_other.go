//go:build !linux

package evloop

import "time"

// ticker posts a tick task from a goroutine: BSD and macOS have no timerfd.
type ticker struct {
	stop chan struct{}
	done chan struct{}
}

func (t *ticker) open(l *Loop) error {
	t.stop, t.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(t.done)
		tk := time.NewTicker(l.tick)
		defer tk.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tk.C:
				_ = l.PostFunc(func(any) error { l.doTick(); return nil }, nil)
			}
		}
	}()
	return nil
}

func (t *ticker) arm(time.Duration) {} // the goroutine ticks regardless
func (t *ticker) is(int) bool       { return false }
func (t *ticker) drain()            {}
func (t *ticker) close()            { close(t.stop); <-t.done }
