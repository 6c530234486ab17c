package report

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/loadtest"
)

// A recorded run and its JSON result, reported side by side: every
// session a point, the summary figures those of the run, the slowest
// sessions listed slowest first.
func TestReportOfARun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sink, err := loadtest.StartSink(ctx, loadtest.SinkConfig{Listen: "127.0.0.1:0", Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dir := t.TempDir()
	rec := filepath.Join(dir, "run.rec")
	res, err := loadtest.Run(ctx, loadtest.LoadConfig{Target: sink.Addr(), Sessions: 300, Concurrency: 3, RecordPath: rec})
	if err != nil || res.ErrorsTotal != 0 {
		t.Fatalf("run: %v, %d errors", err, res.ErrorsTotal)
	}
	b, _ := res.JSON()
	js := filepath.Join(dir, "run.json")
	if err := os.WriteFile(js, b, 0o600); err != nil {
		t.Fatal(err)
	}
	runs, err := LoadAll([]string{"recorded=" + rec, js}, 5)
	if err != nil {
		t.Fatal(err)
	}
	r, j := runs[0], runs[1]
	if r.Name != "recorded" || j.Name != "run" || !r.Records || j.Records {
		t.Fatalf("names %q %q records %v %v", r.Name, j.Name, r.Records, j.Records)
	}
	if r.Sessions != 300 || len(r.Points) != 300 || r.Heat != nil || j.Sessions != 300 {
		t.Fatalf("sessions %d points %d heat %v json %d", r.Sessions, len(r.Points), r.Heat != nil, j.Sessions)
	}
	if r.Latency.TotalCount() != 300 || j.Latency.TotalCount() != 300 || r.Latency.Max() != j.Latency.Max() {
		t.Fatalf("latency: records %d max %d, json %d max %d", r.Latency.TotalCount(), r.Latency.Max(), j.Latency.TotalCount(), j.Latency.Max())
	}
	if len(r.Slowest) != 5 {
		t.Fatalf("%d slowest", len(r.Slowest))
	}
	for i := 1; i < len(r.Slowest); i++ {
		if r.Slowest[i].Latency() > r.Slowest[i-1].Latency() {
			t.Fatalf("slowest not in order: %v then %v", r.Slowest[i-1].Latency(), r.Slowest[i].Latency())
		}
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, runs, "t <&>"); err != nil {
		t.Fatal(err)
	}
	h := page.String()
	for sub, n := range map[string]int{`class="pt"`: 300, `<polyline class="series"`: 2, `<polyline class="series rate"`: 2, `<table class="slowest">`: 1, "t &lt;&amp;&gt;": 2} {
		if got := strings.Count(h, sub); got != n {
			t.Fatalf("%q: %d times, want %d", sub, got, n)
		}
	}
	for _, bad := range []string{"<script", "http://", "https://", "@import", "url("} {
		if strings.Contains(h, bad) && bad != "http://" {
			t.Fatalf("the page has %q: not self-contained", bad)
		}
	}
	if strings.Count(h, "http://") != strings.Count(h, `xmlns="http://www.w3.org/2000/svg"`) {
		t.Fatal("the page names an address other than the SVG namespace")
	}
	var text bytes.Buffer
	if err := WriteText(&text, runs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "slowest 5 sessions of recorded") || strings.Count(text.String(), "\n") < 9 {
		t.Fatalf("text report:\n%s", text.String())
	}
}

func TestBinWidth(t *testing.T) {
	for _, c := range []struct{ span, want float64 }{{1, 0.125}, {5, 0.125}, {60, 1}, {300, 2}, {3600, 32}} {
		if got := binWidth(c.span); got != c.want || c.span/got > maxBins {
			t.Fatalf("binWidth(%v) = %v, want %v", c.span, got, c.want)
		}
	}
}
