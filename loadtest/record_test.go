package loadtest

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// sampleRecords are sessions covering every field: clean and failed,
// sources defined and reused, IPv4 and IPv6, no source, starts out of order.
func sampleRecords() []SessionRecord {
	v4 := netip.MustParseAddr("127.0.0.2")
	v6 := netip.MustParseAddr("::1")
	var out []SessionRecord
	for i := range 300 {
		s := SessionRecord{
			Start:    time.Duration(i*1000+(i%7)*333) * time.Microsecond,
			Wait:     time.Duration(i%5) * time.Millisecond,
			Connect:  time.Duration(100+i) * time.Microsecond,
			TTFB:     time.Duration(200+i) * time.Microsecond,
			RTT:      time.Duration(300+i) * time.Microsecond,
			Duration: time.Duration(700+i)*time.Microsecond + time.Duration(i),
			Requests: 1,
			Sent:     64,
			Received: 64,
			Source:   netip.AddrPortFrom(v4, uint16(30000+i)),
		}
		switch i % 10 {
		case 3:
			s.Kind, s.Source, s.Requests, s.Sent, s.Received = KindRefused, netip.AddrPort{}, 0, 0, 0
		case 4:
			s.Source = netip.AddrPortFrom(v6, 40000)
		case 5:
			s.Kind = KindTimeout
			s.Sent = 1 << 40 // bulk-sized
		}
		if i%50 == 49 {
			s.Start -= 40 * time.Millisecond // ended after later ones
		}
		out = append(out, s)
	}
	return out
}

func writeSample(t *testing.T, path string, hdr RecordHeader, recs []SessionRecord) {
	t.Helper()
	w, err := createRecordWriter(path, hdr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		w.add(&recs[i])
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
}

// Every field comes back exactly, segment after segment, and a clean
// session costs well under the 40-byte budget.
func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	recs := sampleRecords()
	a, b := filepath.Join(dir, "a.rec"), filepath.Join(dir, "b.rec")
	writeSample(t, a, RecordHeader{Mode: ModeRR, Target: "t", BaseUnixNano: 1e18, Proc: 0, Procs: 2}, recs)
	writeSample(t, b, RecordHeader{Mode: ModeRR, Target: "t", BaseUnixNano: 1e18 + 5, Proc: 1, Procs: 2}, recs[:10])
	both := filepath.Join(dir, "both.rec")
	if err := ConcatRecords(both, []string{a, b}); err != nil {
		t.Fatal(err)
	}
	var got []SessionRecord
	var procs []int
	err := ReadRecords(both, func(h *RecordHeader, s *SessionRecord) error {
		if h.Mode != ModeRR || h.Version != recordVersion {
			t.Fatalf("header %+v", h)
		}
		got = append(got, *s)
		procs = append(procs, h.Proc)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]SessionRecord{}, recs...), recs[:10]...)
	for i := range want {
		if i >= len(recs) {
			want[i].Proc = 1
		}
		want[i].Start = want[i].Start.Truncate(time.Microsecond)
	}
	if !reflect.DeepEqual(got, want) {
		for i := range want {
			if i >= len(got) || !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[min(i, len(got)-1)], want[i])
			}
		}
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	if procs[0] != 0 || procs[len(procs)-1] != 1 {
		t.Fatalf("procs %v", procs)
	}
	// A clean rr session alone.
	one := filepath.Join(dir, "one.rec")
	writeSample(t, one, RecordHeader{Mode: ModeRR}, recs[:1])
	fi, _ := os.Stat(one)
	empty := filepath.Join(dir, "empty.rec")
	writeSample(t, empty, RecordHeader{Mode: ModeRR}, nil)
	fe, _ := os.Stat(empty)
	if per := fi.Size() - fe.Size(); per > 30 {
		t.Fatalf("a clean session takes %d bytes", per)
	}
}

// A file cut anywhere is reported as truncated (or, cut inside the magic,
// as not a record file), never as a shorter run; garbage is refused.
func TestRecordTruncatedAndGarbage(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full.rec")
	writeSample(t, full, RecordHeader{Mode: ModeRR}, sampleRecords()[:40])
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	for cut := 1; cut < len(b); cut++ {
		rr := NewRecordReader("cut", bytes.NewReader(b[:cut]))
		var err error
		for err == nil {
			_, err = rr.Next()
		}
		if err == io.EOF {
			t.Fatalf("cut at %d of %d bytes read as a whole file", cut, len(b))
		}
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrBadRecord) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
	for name, junk := range map[string][]byte{
		"empty":   nil,
		"json":    []byte(`{"mode":"rr"}`),
		"magic":   []byte(recordMagic + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
		"header":  append([]byte(recordMagic+"\x05"), "nope!"...),
		"version": append([]byte(recordMagic+"\x0d"), `{"version":9}`...),
	} {
		rr := NewRecordReader(name, bytes.NewReader(junk))
		if _, err := rr.Next(); !errors.Is(err, ErrBadRecord) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A wrong count in the end marker.
	bad := append([]byte{}, b...)
	bad[len(bad)-1]++
	rr := NewRecordReader("count", bytes.NewReader(bad))
	var rerr error
	for rerr == nil {
		_, rerr = rr.Next()
	}
	if !errors.Is(rerr, ErrBadRecord) {
		t.Fatalf("wrong end count: %v", rerr)
	}
	if err := ReadRecords(filepath.Join(dir, "missing.rec"), nil); err == nil {
		t.Fatal("a missing file read")
	}
}

// Records of different modes do not merge into one file.
func TestConcatRecordsRefusesMixedModes(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.rec"), filepath.Join(dir, "b.rec")
	writeSample(t, a, RecordHeader{Mode: ModeRR}, sampleRecords()[:3])
	writeSample(t, b, RecordHeader{Mode: ModeStorm}, sampleRecords()[:3])
	if err := ConcatRecords(filepath.Join(dir, "m.rec"), []string{a, b}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("mixed modes: %v", err)
	}
	cut := filepath.Join(dir, "cut.rec")
	raw, _ := os.ReadFile(a)
	_ = os.WriteFile(cut, raw[:len(raw)-2], 0o600)
	if err := ConcatRecords(filepath.Join(dir, "m2.rec"), []string{a, cut}); !errors.Is(err, ErrTruncated) {
		t.Fatalf("a truncated part: %v", err)
	}
}

// FuzzRecordReader: any bytes give records or an error, never a panic or
// an unbounded allocation.
func FuzzRecordReader(f *testing.F) {
	dir := f.TempDir()
	p := filepath.Join(dir, "seed.rec")
	w, _ := createRecordWriter(p, RecordHeader{Mode: ModeRR})
	for _, s := range sampleRecords()[:12] {
		w.add(&s)
	}
	_ = w.close()
	seed, _ := os.ReadFile(p)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte(recordMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		rr := NewRecordReader("fuzz", bytes.NewReader(b))
		for range 100000 {
			if _, err := rr.Next(); err != nil {
				return
			}
		}
	})
}
