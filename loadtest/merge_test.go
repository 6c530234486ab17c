package loadtest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// Runs merged from several recorders give exactly the percentiles of one
// histogram over all their samples, and the sums of their counts.
func TestMergeIsExact(t *testing.T) {
	one := newRecorder()
	var parts []*Result
	rng := rand.New(rand.NewPCG(1, 2))
	for p := range 4 {
		rec := newRecorder()
		for i := range 2000 + 500*p {
			// Different shapes per part: the merge must not average them.
			ct := time.Duration(rng.ExpFloat64()*float64(100*time.Microsecond)) * time.Duration(p+1)
			rtt := time.Duration(rng.Int64N(int64(50*time.Millisecond))) + time.Duration(p)*time.Millisecond
			var err error
			if i%97 == 0 {
				err = ErrMismatch
			}
			began := time.Unix(100, 0).Add(time.Duration(i) * time.Millisecond)
			o := outcome{intended: began.Add(-time.Duration(p) * time.Millisecond), began: began, connect: ct, ttfb: rtt, rtt: rtt, sent: 64, rcvd: 64, err: err}
			o2 := o
			rec.endAt(&o, began.Add(ct+rtt))
			one.endAt(&o2, began.Add(ct+rtt))
		}
		r := &Result{Mode: ModeRR, Target: "t", Elapsed: time.Duration(p+1) * time.Second}
		rec.fill(r)
		// Through JSON, as a child process delivers it.
		b, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseResult(b)
		if err != nil {
			t.Fatal(err)
		}
		if back.RTT != r.RTT || back.Sessions != r.Sessions || back.Elapsed != r.Elapsed {
			t.Fatalf("JSON round trip: rtt %+v sessions %d elapsed %v, want %+v %d %v", back.RTT, back.Sessions, back.Elapsed, r.RTT, r.Sessions, r.Elapsed)
		}
		parts = append(parts, back)
	}
	m, err := Merge(parts)
	if err != nil {
		t.Fatal(err)
	}
	want := &Result{Mode: ModeRR, Target: "t", Elapsed: 4 * time.Second}
	one.fill(want)
	if m.RTT != want.RTT || m.Connect != want.Connect || m.TTFB != want.TTFB || m.Latency != want.Latency || m.Wait != want.Wait {
		t.Fatalf("merged percentiles differ from one histogram's:\nrtt %+v\nwant %+v\nconnect %+v\nwant %+v", m.RTT, want.RTT, m.Connect, want.Connect)
	}
	if m.Sessions != want.Sessions || m.Attempts != want.Attempts || m.ErrorsTotal != want.ErrorsTotal ||
		m.BytesSent != want.BytesSent || !reflect.DeepEqual(m.Errors, want.Errors) {
		t.Fatalf("merged counts %d/%d/%d/%d %v, want %d/%d/%d/%d %v", m.Sessions, m.Attempts, m.ErrorsTotal, m.BytesSent, m.Errors,
			want.Sessions, want.Attempts, want.ErrorsTotal, want.BytesSent, want.Errors)
	}
	if m.Elapsed != 4*time.Second || m.Procs != 4 {
		t.Fatalf("merged elapsed %v procs %d", m.Elapsed, m.Procs)
	}
	if _, err := Merge([]*Result{parts[0], {Mode: ModeIdle}}); err == nil {
		t.Fatal("merged runs of two modes")
	}
}

// Split divides a run over processes without losing or doubling anything.
func TestSplit(t *testing.T) {
	c := LoadConfig{Sessions: 10001, Concurrency: 50, ConnectRate: 1000, Rate: 3000, Streams: 7, SourceIPs: "127.0.0.2-127.0.0.11", RecordPath: "r"}
	var sessions, streams int
	var rate, open float64
	seen := map[string]bool{}
	for i := range 3 {
		s, err := c.Split(i, 3)
		if err != nil {
			t.Fatal(err)
		}
		sessions += s.Sessions
		streams += s.Streams
		rate += s.ConnectRate
		open += s.Rate
		if s.Proc != i || s.RecordPath != fmt.Sprintf("r.%d", i) {
			t.Fatalf("child %d: proc %d record %q", i, s.Proc, s.RecordPath)
		}
		if s.Concurrency != 17 {
			t.Fatalf("concurrency %d, want 17", s.Concurrency)
		}
		ips, _ := ParseSourceIPs(s.SourceIPs)
		for _, a := range ips {
			if seen[a.String()] {
				t.Fatalf("source %v in two children", a)
			}
			seen[a.String()] = true
		}
	}
	if sessions != 10001 || streams != 7 || rate != 1000 || open != 3000 || len(seen) != 10 {
		t.Fatalf("split: %d sessions, %d streams, rate %v, open-loop rate %v, %d sources", sessions, streams, rate, open, len(seen))
	}
}
