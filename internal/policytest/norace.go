//go:build !race

package policytest

// RaceEnabled reports whether the race detector is on: it allocates on its
// own, so allocation tests skip under it.
const RaceEnabled = false
