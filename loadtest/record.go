package loadtest

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"
)

// The session record format (`relayd load --record FILE`), version 1.
//
// A file is one or more segments, one per process of a run (RunProcs
// concatenates its children's), or per run when `relayd load merge`
// concatenates records of several machines. A segment is:
//
//	"RLDREC1\n"                       8 bytes of magic
//	uvarint n, n bytes of JSON        RecordHeader
//	records, each:
//	  byte      kind: 0 clean, i = RecordHeader.Kinds[i-1]; 0xff ends the segment
//	  varint    start: µs since the previous record's start (zigzag; the
//	            first is from RecordHeader.BaseUnixNano). Records are written
//	            as sessions end, so starts are not in order.
//	  uvarint   wait, connect, ttfb, rtt, duration: nanoseconds
//	  uvarint   requests, bytes sent, bytes received
//	  uvarint   source: 0 unknown (the connect failed before binding);
//	            1..k the k-th address this segment has defined; k+1 defines
//	            the next one, whose length (4 or 16) and bytes follow
//	  uvarint   source port
//	0xff, uvarint count                end of segment: the number of records
//
// A clean rr session of 64 bytes is 20–24 bytes. Start is the intended
// start (open loop: when the schedule wanted the session, however late it
// actually began; closed loop: when it began); wait is how late it began;
// duration is from its beginning to its end, so its latency is wait +
// duration. A file without its end marker was not finished (the run was
// killed or the disk filled): ReadRecords reports it as ErrTruncated rather
// than a short, plausible run.

const (
	recordMagic   = "RLDREC1\n"
	recordEnd     = 0xff
	recordVersion = 1
	// recordMaxHeader bounds a header's length, so that a corrupt length
	// cannot make the reader allocate gigabytes.
	recordMaxHeader = 1 << 20
)

// ErrTruncated: a record file ends inside a segment.
var ErrTruncated = errors.New("loadtest: record file truncated")

// ErrBadRecord: a record file is not in the format, or is corrupt.
var ErrBadRecord = errors.New("loadtest: not a valid record file")

// RecordHeader describes one segment of a record file.
type RecordHeader struct {
	Version      int      `json:"version"`
	Mode         string   `json:"mode"`
	Target       string   `json:"target"`
	BaseUnixNano int64    `json:"base_unix_ns"` // the run's start: record starts count from it
	Proc         int      `json:"proc"`         // which process of the run (0-based)
	Procs        int      `json:"procs"`        // how many the run had
	Rate         float64  `json:"rate,omitempty"`
	Kinds        []string `json:"kinds"` // error kinds by code (code 1 = Kinds[0])
}

// SessionRecord is one session as recorded.
type SessionRecord struct {
	Start    time.Duration // intended start, since the segment's BaseUnixNano
	Wait     time.Duration // how late the session began after Start
	Connect  time.Duration // connect() time
	TTFB     time.Duration
	RTT      time.Duration // the round trip; with --requests N the slowest one
	Duration time.Duration // from beginning to end
	Requests uint64        // round trips completed
	Sent     uint64
	Received uint64
	Kind     string // "" for a clean session, else an error kind
	Source   netip.AddrPort
	Proc     int
}

// Latency is the session's time from its intended start to its end.
func (s *SessionRecord) Latency() time.Duration { return s.Wait + s.Duration }

// recordWriter streams records to a file through a fixed buffer: memory
// does not grow with the number of sessions. Its caller serialises calls.
type recordWriter struct {
	f       *os.File
	w       *bufio.Writer
	kinds   map[string]byte
	sources map[netip.Addr]uint64
	prev    int64 // µs start of the previous record
	n       uint64
	buf     []byte
	err     error // the first write error; later writes are skipped
}

func createRecordWriter(path string, h RecordHeader) (*recordWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: record: %w", err)
	}
	rw := &recordWriter{f: f, w: bufio.NewWriterSize(f, 256<<10), kinds: map[string]byte{}, sources: map[netip.Addr]uint64{}}
	h.Version = recordVersion
	h.Kinds = ErrorKinds
	for i, k := range ErrorKinds {
		rw.kinds[k] = byte(i + 1)
	}
	hj, _ := json.Marshal(h)
	rw.w.WriteString(recordMagic)
	rw.w.Write(binary.AppendUvarint(nil, uint64(len(hj))))
	rw.w.Write(hj)
	return rw, nil
}

// add appends one record.
func (rw *recordWriter) add(s *SessionRecord) {
	if rw.err != nil {
		return
	}
	b := rw.buf[:0]
	b = append(b, rw.kinds[s.Kind])
	us := int64(s.Start / time.Microsecond)
	b = binary.AppendVarint(b, us-rw.prev)
	rw.prev = us
	for _, d := range [...]time.Duration{s.Wait, s.Connect, s.TTFB, s.RTT, s.Duration} {
		b = binary.AppendUvarint(b, uint64(max(d, 0)))
	}
	b = binary.AppendUvarint(b, s.Requests)
	b = binary.AppendUvarint(b, s.Sent)
	b = binary.AppendUvarint(b, s.Received)
	if a := s.Source.Addr().Unmap(); !a.IsValid() {
		b = append(b, 0)
	} else if i, ok := rw.sources[a]; ok {
		b = binary.AppendUvarint(b, i)
	} else {
		i = uint64(len(rw.sources) + 1)
		rw.sources[a] = i
		b = binary.AppendUvarint(b, i)
		raw := a.AsSlice()
		b = append(b, byte(len(raw)))
		b = append(b, raw...)
	}
	b = binary.AppendUvarint(b, uint64(s.Source.Port()))
	rw.buf = b
	if _, err := rw.w.Write(b); err != nil {
		rw.err = err
		return
	}
	rw.n++
}

// close writes the end marker and closes the file; it returns the first
// error of the whole file.
func (rw *recordWriter) close() error {
	if rw.err == nil {
		rw.w.WriteByte(recordEnd)
		rw.w.Write(binary.AppendUvarint(nil, rw.n))
		rw.err = rw.w.Flush()
	}
	if err := rw.f.Close(); rw.err == nil {
		rw.err = err
	}
	if rw.err != nil {
		return fmt.Errorf("loadtest: record %s: %w", rw.f.Name(), rw.err)
	}
	return nil
}

// RecordReader reads a record file segment by segment.
type RecordReader struct {
	name    string
	r       *bufio.Reader
	off     int64 // bytes consumed, for error messages
	seg     int   // segments started
	hdr     RecordHeader
	in      bool // inside a segment
	n       uint64
	prev    int64
	sources []netip.Addr
}

// NewRecordReader reads records from r; name is used in errors.
func NewRecordReader(name string, r io.Reader) *RecordReader {
	return &RecordReader{name: name, r: bufio.NewReaderSize(r, 256<<10)}
}

// Header is the current segment's header (valid after the first Next).
func (rr *RecordReader) Header() RecordHeader { return rr.hdr }

// Next returns the next record, io.EOF after the last segment's end marker,
// ErrTruncated if the file ends inside a segment, ErrBadRecord if it is not
// in the format.
func (rr *RecordReader) Next() (SessionRecord, error) {
	var s SessionRecord
	for {
		if !rr.in {
			if err := rr.segment(); err != nil {
				return s, err
			}
		}
		k, err := rr.byte()
		if err != nil {
			return s, rr.truncated()
		}
		if k != recordEnd {
			return s, rr.record(k, &s)
		}
		count, err := rr.uvarint()
		if err != nil {
			return s, rr.truncated()
		}
		if count != rr.n {
			return s, rr.bad("segment %d ends saying %d records, it holds %d", rr.seg, count, rr.n)
		}
		rr.in = false
	}
}

func (rr *RecordReader) segment() error {
	var magic [len(recordMagic)]byte
	n, err := io.ReadFull(rr.r, magic[:])
	rr.off += int64(n)
	switch {
	case n == 0 && err == io.EOF:
		if rr.seg == 0 {
			return rr.bad("empty file")
		}
		return io.EOF
	case err != nil:
		return rr.truncated()
	case string(magic[:]) != recordMagic:
		return rr.bad("no record magic at byte %d", rr.off-int64(n))
	}
	hl, err := rr.uvarint()
	if err != nil {
		return rr.truncated()
	}
	if hl > recordMaxHeader {
		return rr.bad("header of %d bytes", hl)
	}
	hj := make([]byte, hl)
	m, err := io.ReadFull(rr.r, hj)
	rr.off += int64(m)
	if err != nil {
		return rr.truncated()
	}
	var h RecordHeader
	if err := json.Unmarshal(hj, &h); err != nil {
		return rr.bad("header: %v", err)
	}
	if h.Version != recordVersion {
		return rr.bad("format version %d (this relayd reads %d)", h.Version, recordVersion)
	}
	rr.hdr, rr.in, rr.n, rr.prev, rr.sources = h, true, 0, 0, rr.sources[:0]
	rr.seg++
	return nil
}

func (rr *RecordReader) record(k byte, s *SessionRecord) error {
	if k > 0 {
		if int(k) > len(rr.hdr.Kinds) {
			return rr.bad("error kind code %d", k)
		}
		s.Kind = rr.hdr.Kinds[k-1]
	}
	d, err := binary.ReadVarint(rr)
	if err != nil {
		return rr.truncated()
	}
	rr.prev += d
	s.Start = time.Duration(rr.prev) * time.Microsecond
	var v [9]uint64
	for i := range v {
		if v[i], err = rr.uvarint(); err != nil {
			return rr.truncated()
		}
	}
	s.Wait, s.Connect, s.TTFB, s.RTT, s.Duration = time.Duration(v[0]), time.Duration(v[1]), time.Duration(v[2]), time.Duration(v[3]), time.Duration(v[4])
	s.Requests, s.Sent, s.Received = v[5], v[6], v[7]
	src := v[8]
	switch {
	case src == 0:
	case src <= uint64(len(rr.sources)):
		s.Source = netip.AddrPortFrom(rr.sources[src-1], 0)
	case src == uint64(len(rr.sources))+1:
		l, err := rr.byte()
		if err != nil {
			return rr.truncated()
		}
		if l != 4 && l != 16 {
			return rr.bad("source address of %d bytes", l)
		}
		raw := make([]byte, l)
		m, err := io.ReadFull(rr.r, raw)
		rr.off += int64(m)
		if err != nil {
			return rr.truncated()
		}
		a, _ := netip.AddrFromSlice(raw)
		rr.sources = append(rr.sources, a)
		s.Source = netip.AddrPortFrom(a, 0)
	default:
		return rr.bad("source index %d of %d defined", src, len(rr.sources))
	}
	port, err := rr.uvarint()
	if err != nil {
		return rr.truncated()
	}
	if port > 65535 {
		return rr.bad("port %d", port)
	}
	if s.Source.Addr().IsValid() {
		s.Source = netip.AddrPortFrom(s.Source.Addr(), uint16(port))
	}
	s.Proc = rr.hdr.Proc
	rr.n++
	return nil
}

// ReadByte makes rr an io.ByteReader for binary.ReadVarint, counting bytes.
func (rr *RecordReader) ReadByte() (byte, error) { return rr.byte() }

func (rr *RecordReader) byte() (byte, error) {
	b, err := rr.r.ReadByte()
	if err == nil {
		rr.off++
	}
	return b, err
}

func (rr *RecordReader) uvarint() (uint64, error) { return binary.ReadUvarint(rr) }

func (rr *RecordReader) truncated() error {
	return fmt.Errorf("%w: %s: segment %d ends at byte %d after %d whole records, without its end marker (the run did not finish writing it)",
		ErrTruncated, rr.name, rr.seg, rr.off, rr.n)
}

func (rr *RecordReader) bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadRecord, rr.name, fmt.Sprintf(format, a...))
}

// ReadRecords calls fn for every record of the file at path, in file order.
func ReadRecords(path string, fn func(h *RecordHeader, s *SessionRecord) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("loadtest: record: %w", err)
	}
	defer f.Close()
	rr := NewRecordReader(path, f)
	for {
		s, err := rr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(&rr.hdr, &s); err != nil {
			return err
		}
	}
}

// IsRecordFile reports whether the file at path starts with the record
// magic (as opposed to a JSON result).
func IsRecordFile(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var magic [len(recordMagic)]byte
	n, _ := io.ReadFull(f, magic[:])
	return n == len(magic) && string(magic[:]) == recordMagic, nil
}

// ConcatRecords writes the segments of the files srcs, checked whole, to
// dst: the record side of merging runs.
func ConcatRecords(dst string, srcs []string) error {
	mode := ""
	for _, s := range srcs {
		err := ReadRecords(s, func(h *RecordHeader, _ *SessionRecord) error {
			if mode == "" {
				mode = h.Mode
			} else if h.Mode != mode {
				return fmt.Errorf("%w: %s holds a %s run, the first file a %s run", ErrBadConfig, s, h.Mode, mode)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("loadtest: record: %w", err)
	}
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			out.Close()
			return fmt.Errorf("loadtest: record: %w", err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return fmt.Errorf("loadtest: record %s: %w", dst, err)
		}
	}
	return out.Close()
}
