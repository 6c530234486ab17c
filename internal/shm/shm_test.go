package shm

import (
	"sync"
	"sync/atomic"
	"testing"
)

// Two mappings of one memfd, as a master and a worker have: what one counts
// the other sees, and the cap holds over both.
func TestSharedAcrossMappings(t *testing.T) {
	m, err := Create(4, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.SetLimit(Global, 10)
	m.SetLimit(3, 4)
	// A second, independent mapping (a worker would get the fd over the
	// control socket; dup stands in for that here).
	w, err := Open(dupFD(t, m.FD()), 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s1, _ := w.Slot(1)
	s2, _ := m.Slot(2)
	for i := range 4 {
		if !s1.Acquire(3) {
			t.Fatalf("acquire %d on key 3 refused", i)
		}
	}
	if s2.Acquire(3) {
		t.Fatal("a 5th session on key 3 (cap 4) was admitted from the other worker")
	}
	for i := range 6 {
		if !s2.Acquire(1) {
			t.Fatalf("acquire %d on key 1 refused", i)
		}
	}
	if s2.Acquire(1) || s1.Acquire(Global) {
		t.Fatal("an 11th session was admitted over the global cap of 10")
	}
	if got := m.Total(Global); got != 10 {
		t.Fatalf("global total %d, want 10", got)
	}
	if got := m.Total(3); got != 4 {
		t.Fatalf("key 3 total %d, want 4", got)
	}
	// Worker 1 dies: the master zeroes its row, and its 4 are free again.
	m.Reset(1)
	if m.Total(Global) != 6 || m.Total(3) != 0 {
		t.Fatalf("after reset: global %d key3 %d, want 6 and 0", m.Total(Global), m.Total(3))
	}
	s2.Release(1)
	if m.Count(2, 1) != 5 || m.Count(2, Global) != 5 {
		t.Fatalf("release: worker 2 counts key1 %d global %d, want 5 and 5", m.Count(2, 1), m.Count(2, Global))
	}
}

// Many goroutines on several slots race at the cap: the total never
// passes it, and once they are done exactly what was admitted is counted.
func TestCapHoldsUnderRace(t *testing.T) {
	m, err := Create(4, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const cap = 50
	m.SetLimit(1, cap)
	var admitted, over atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		s, _ := m.Slot(w)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				held := 0
				for range 2000 {
					if s.Acquire(1) {
						admitted.Add(1)
						held++
						if m.Total(1) > cap {
							over.Add(1)
						}
					}
					if held > 0 && held%3 == 0 {
						s.Release(1)
						admitted.Add(-1)
						held--
					}
				}
				for ; held > 0; held-- {
					s.Release(1)
					admitted.Add(-1)
				}
			}()
		}
	}
	wg.Wait()
	if over.Load() != 0 {
		t.Fatalf("the total passed the cap %d times", over.Load())
	}
	if m.Total(1) != 0 || m.Total(Global) != 0 || admitted.Load() != 0 {
		t.Fatalf("after all releases: key %d global %d admitted %d, want 0", m.Total(1), m.Total(Global), admitted.Load())
	}
}

func TestBounds(t *testing.T) {
	if _, err := Create(0, 1); err == nil {
		t.Fatal("0 workers accepted")
	}
	if _, err := Create(1, MaxKeys+1); err == nil {
		t.Fatal("too many keys accepted")
	}
	m, err := Create(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Slot(2); err == nil {
		t.Fatal("slot 2 of 2 accepted")
	}
	if _, err := Open(dupFD(t, m.FD()), 3, 4); err == nil {
		t.Fatal("a mapping with the wrong dimensions was accepted")
	}
}
