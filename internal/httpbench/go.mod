module github.com/resilience-go/resilience/internal/httpbench

go 1.26.0

replace github.com/resilience-go/resilience => ../..

require (
	github.com/failsafe-go/failsafe-go v0.9.8
	github.com/resilience-go/resilience v0.0.0-00010101000000-000000000000
)

require (
	github.com/bits-and-blooms/bitset v1.24.4 // indirect
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	github.com/influxdata/tdigest v0.0.1 // indirect
	golang.org/x/time v0.16.0 // indirect
)
