//go:build !race

package policytest_test

const raceEnabled = false
