//go:build race

package policytest

// raceEnabled: the race detector is on, and allocates on its own.
const raceEnabled = true
