package loadtest

import "bytes"

// The byte stream that bulk mode and source sinks send is fixed so the
// receiver can verify every byte without keeping a copy: the byte at stream
// offset o is byte(o % patternPeriod). The period is prime so that a lost or
// duplicated chunk of any power-of-two size shows up as a mismatch.
const (
	patternPeriod = 251
	patternChunk  = 64 << 10
)

// pattern holds one chunk plus a period, so any offset's next patternChunk
// bytes are a sub-slice without copying.
var pattern = func() []byte {
	b := make([]byte, patternChunk+patternPeriod)
	for i := range b {
		b[i] = byte(i % patternPeriod)
	}
	return b
}()

// PatternAt is the byte at stream offset off of the bulk/source pattern.
func PatternAt(off uint64) byte { return byte(off % patternPeriod) }

// patternSlice returns the n (≤ patternChunk) pattern bytes starting at
// stream offset off. The result aliases a shared read-only buffer.
func patternSlice(off uint64, n int) []byte {
	s := int(off % patternPeriod)
	return pattern[s : s+n]
}

// patternCheck reports whether b equals the pattern from stream offset off.
func patternCheck(off uint64, b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), patternChunk)
		if !bytes.Equal(b[:n], patternSlice(off, n)) {
			return false
		}
		b = b[n:]
		off += uint64(n)
	}
	return true
}

// fillSession writes rr payload bytes for session id into b: a short
// per-session sequence, so a relay that crosses two sessions' bytes is caught
// as a mismatch.
func fillSession(b []byte, id uint64) {
	x := id*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
}
