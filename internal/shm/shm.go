package shm

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bounds of a table. Keys: the global count plus one per listener name the
// master has seen; rows: the limits plus one per worker.
const (
	MaxKeys    = 1024
	MaxWorkers = 256
)

// Global is the key of the process-wide session count (limits.max_sessions).
const Global = 0

// Table is a mapped counter table. The zero value is not useful: Create it
// (the master) or Open it (a worker).
type Table struct {
	mem     []byte
	fd      int
	workers int
	keys    int
}

func size(workers, keys int) int { return (workers + 1) * keys * 8 }

func check(workers, keys int) error {
	if workers < 1 || workers > MaxWorkers {
		return fmt.Errorf("shm: %d workers, want 1..%d", workers, MaxWorkers)
	}
	if keys < 1 || keys > MaxKeys {
		return fmt.Errorf("shm: %d keys, want 1..%d", keys, MaxKeys)
	}
	return nil
}

// Create makes a zeroed table in a new memfd. FD returns it, to pass to the
// workers (it is close-on-exec: hand it over explicitly).
func Create(workers, keys int) (*Table, error) {
	if err := check(workers, keys); err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("relayd-sessions", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("shm: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size(workers, keys))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: ftruncate: %w", err)
	}
	t, err := Open(fd, workers, keys)
	if err != nil {
		unix.Close(fd)
	}
	return t, err
}

// Open maps the table in fd, which it owns once it succeeds (Close closes
// it); on an error the caller still owns fd.
func Open(fd, workers, keys int) (*Table, error) {
	if err := check(workers, keys); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("shm: fstat: %w", err)
	}
	if st.Size != int64(size(workers, keys)) {
		return nil, fmt.Errorf("shm: table is %d bytes, want %d for %d workers × %d keys", st.Size, size(workers, keys), workers, keys)
	}
	mem, err := unix.Mmap(fd, 0, size(workers, keys), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: mmap: %w", err)
	}
	return &Table{mem: mem, fd: fd, workers: workers, keys: keys}, nil
}

// FD is the memfd behind the table.
func (t *Table) FD() int { return t.fd }

// Dims are the table's worker and key counts (for Open in a worker).
func (t *Table) Dims() (workers, keys int) { return t.workers, t.keys }

// Close unmaps the table and closes its fd. No Slot of it may be used
// afterwards.
func (t *Table) Close() error {
	err := unix.Munmap(t.mem)
	return errors.Join(err, unix.Close(t.fd))
}

// cell is the counter at row r, key k. The mapping is page-aligned, so every
// cell is 8-byte aligned as 64-bit atomics need.
func (t *Table) cell(r, k int) *atomic.Int64 {
	return (*atomic.Int64)(unsafe.Pointer(&t.mem[(r*t.keys+k)*8]))
}

// SetLimit sets key's cap (0 = none). The master's job.
func (t *Table) SetLimit(key int, limit int64) { t.cell(0, key).Store(max(limit, 0)) }

// Limit is key's cap (0 = none).
func (t *Table) Limit(key int) int64 { return t.cell(0, key).Load() }

// Total is the sum of every worker's count for key.
func (t *Table) Total(key int) int64 {
	var n int64
	for w := range t.workers {
		n += t.cell(1+w, key).Load()
	}
	return n
}

// Count is worker w's own count for key.
func (t *Table) Count(w, key int) int64 { return t.cell(1+w, key).Load() }

// Reset zeroes worker w's row: the master calls it once the worker has
// exited and before its replacement starts, so nothing the dead worker
// counted stays counted.
func (t *Table) Reset(w int) {
	for k := range t.keys {
		t.cell(1+w, k).Store(0)
	}
}

// Slot is one worker's view of the table: it counts in its own row.
type Slot struct {
	t *Table
	w int
}

// Slot returns worker w's view (0 ≤ w < workers).
func (t *Table) Slot(w int) (*Slot, error) {
	if w < 0 || w >= t.workers {
		return nil, fmt.Errorf("shm: worker %d of %d", w, t.workers)
	}
	return &Slot{t: t, w: w}, nil
}

// acquire counts one more in key unless the total would pass its cap.
func (s *Slot) acquire(key int) bool {
	c := s.t.cell(1+s.w, key)
	c.Add(1)
	if lim := s.t.Limit(key); lim > 0 && s.t.Total(key) > lim {
		c.Add(-1)
		return false
	}
	return true
}

// Acquire counts one session against the global cap and, if key is not
// Global, against key's cap too; it reports whether both admitted it (on a
// refusal nothing stays counted). Lock-free: a few atomic loads, one per
// worker, and one or two adds. Safe from any goroutine.
func (s *Slot) Acquire(key int) bool {
	if !s.acquire(Global) {
		return false
	}
	if key != Global && !s.acquire(key) {
		s.t.cell(1+s.w, Global).Add(-1)
		return false
	}
	return true
}

// Release uncounts a session that Acquire admitted with the same key.
func (s *Slot) Release(key int) {
	s.t.cell(1+s.w, Global).Add(-1)
	if key != Global {
		s.t.cell(1+s.w, key).Add(-1)
	}
}
