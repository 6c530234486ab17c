package logging

import (
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// slot kinds: what the writer goroutine does with a slot's contents.
const (
	kindLog    uint8 = iota + 1 // buf holds one already-encoded line
	kindAccess                  // acc holds an access entry to encode
)

// slot is one pre-allocated ring entry. seq is the Vyukov sequence number:
// seq == pos means "free for the producer that claims position pos",
// seq == pos+1 means "published, the writer may take it",
// and the writer sets seq = pos+len(slots) when it hands the slot back.
// Everything except seq is owned by exactly one goroutine at a time, the
// hand-over being the seq store/load pair.
type slot struct {
	seq  atomic.Uint64
	kind uint8
	acc  AccessEntry // by value: the producer copies, the writer encodes
	buf  []byte      // encoded line; starts as a window into ring.backing
	base []byte      // the pre-allocated window, restored after oversize lines
}

// ring is a bounded multi-producer, single-consumer queue (Dmitry Vyukov's
// bounded MPMC array queue, used with one consumer). Producers never wait:
// a claim either succeeds with one CAS, retries because another producer
// won that position (so the system made progress), or finds the slot still
// occupied from the previous lap and reports "full".
type ring struct {
	_    cpu.CacheLinePad
	head atomic.Uint64 // next position producers claim
	_    cpu.CacheLinePad
	tail atomic.Uint64 // next position the writer takes; written by the writer only
	_    cpu.CacheLinePad

	slots     []slot
	n         uint64
	backing   []byte
	maxRetain int
}

// minRetainBytes bounds how large a slot's line buffer may stay after a
// long line grew it (or the slot size, if larger): a stack trace does not
// pin its memory in the slot, and a full ring of long lines costs at most
// RingSize KiB.
const minRetainBytes = 1 << 10

func newRing(n, entryBytes int) *ring {
	r := &ring{slots: make([]slot, n), n: uint64(n), backing: make([]byte, n*entryBytes),
		maxRetain: max(entryBytes, minRetainBytes)}
	for i := range r.slots {
		s := &r.slots[i]
		s.seq.Store(uint64(i))
		s.base = r.backing[i*entryBytes : i*entryBytes : (i+1)*entryBytes]
		s.buf = s.base
	}
	return r
}

// claim reserves the next position for a producer. It returns nil when the
// ring is full; the caller then counts a drop. On success the caller owns
// the slot until publish.
func (r *ring) claim() (*slot, uint64) {
	for {
		pos := r.head.Load()
		s := &r.slots[pos%r.n]
		seq := s.seq.Load()
		switch {
		case seq == pos:
			if r.head.CompareAndSwap(pos, pos+1) {
				return s, pos
			}
		case seq < pos:
			// The slot still holds the entry from one lap ago: full.
			return nil, 0
		}
		// seq > pos: another producer claimed pos in between; retry with
		// the new head. Each retry means some producer succeeded.
	}
}

// publish hands a claimed slot to the writer.
func (r *ring) publish(s *slot, pos uint64) { s.seq.Store(pos + 1) }

// peek returns the slot at the tail if it has been published. Writer only.
func (r *ring) peek() (*slot, bool) {
	pos := r.tail.Load()
	s := &r.slots[pos%r.n]
	return s, s.seq.Load() == pos+1
}

// release gives the tail slot back to producers. Writer only, after peek.
func (r *ring) release(s *slot) {
	pos := r.tail.Load()
	if cap(s.buf) > r.maxRetain {
		s.buf = s.base
	}
	s.buf = s.buf[:0]
	s.seq.Store(pos + r.n)
	r.tail.Store(pos + 1)
}

// pending is the number of claimed positions not yet released by the
// writer (published or still being filled).
func (r *ring) pending() uint64 {
	t := r.tail.Load() // tail first: tail never passes head, so this cannot underflow
	return r.head.Load() - t
}
