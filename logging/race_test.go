//go:build race

package logging

// raceEnabled: sync.Pool drops items at random under -race, so zap's pooled
// objects show up as allocations there.
const raceEnabled = true
