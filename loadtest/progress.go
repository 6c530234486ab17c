package loadtest

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// startProgress shows a live line (refreshed every second) on cfg.Progress
// if it is a terminal, and returns the function that removes it.
func startProgress(cfg LoadConfig, rec *recorder) (stop func()) {
	if cfg.Progress == nil || !isTerminal(cfg.Progress) {
		return func() {}
	}
	p := mpb.New(mpb.WithOutput(cfg.Progress), mpb.WithRefreshRate(time.Second), mpb.WithWidth(30))
	total := int64(cfg.Sessions)
	byTime := total == 0 || (cfg.Mode == ModeRR && cfg.Duration > 0)
	if byTime {
		total = int64(max(cfg.Duration/time.Second, 1))
	}
	start := time.Now()
	bar := p.New(total, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name(cfg.Mode+" "+cfg.Target+" ")),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			ok, att, errs := rec.snapshot()
			el := time.Since(start).Seconds()
			return fmt.Sprintf(" %d ok  %d errors  %.0f/s", ok, errs, float64(att)/max(el, 1e-9))
		})),
	)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if byTime {
					bar.SetCurrent(min(int64(time.Since(start)/time.Second), total))
				} else {
					_, att, _ := rec.snapshot()
					bar.SetCurrent(min(int64(att), total))
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		bar.SetCurrent(total)
		bar.Abort(false)
		p.Wait()
	}
}
