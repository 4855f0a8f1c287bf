//go:build race

package saga_test

// raceEnabled: the race detector is on, and allocates on its own.
const raceEnabled = true
