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

// progressText is the running figures: sessions for the session modes,
// bytes and throughput for bulk (whose sessions end only at the end).
func progressText(cfg LoadConfig, rec *recorder, start time.Time) string {
	el := max(time.Since(start).Seconds(), 1e-9)
	ok, att, errs := rec.snapshot()
	if cfg.Mode == ModeBulk {
		b := rec.live.Load()
		return fmt.Sprintf("%s moved  %.2f Gbit/s  %d errors", human(float64(b)), float64(b)*8/el/1e9, errs)
	}
	return fmt.Sprintf("%d ok  %d errors  %.0f/s", ok, errs, float64(att)/el)
}

// startProgress shows the progress on cfg.Progress (see LoadConfig.Progress)
// and returns the function that ends it.
func startProgress(cfg LoadConfig, rec *recorder) (stop func()) {
	if cfg.Progress == nil || cfg.ProgressMode == "off" {
		return func() {}
	}
	if !isTerminal(cfg.Progress) {
		return func() {} // the interval reports are the progress (progressPlain)
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
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return " " + progressText(cfg, rec, start) })),
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

// progressPlain reports whether the progress is the interval report lines
// (off a terminal, where a redrawn bar would be noise).
func progressPlain(cfg LoadConfig) bool {
	return cfg.Progress != nil && cfg.ProgressMode != "off" && !isTerminal(cfg.Progress)
}
