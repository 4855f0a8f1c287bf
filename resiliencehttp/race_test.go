//go:build race

package resiliencehttp_test

// raceEnabled: the race detector is on, and allocates on its own.
const raceEnabled = true
