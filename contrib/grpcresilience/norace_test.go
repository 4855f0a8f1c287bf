//go:build !race

package grpcresilience_test

const raceEnabled = false
