// Package httpbench measures the overhead of resiliencehttp.Transport
// beside failsafe-go's failsafehttp, each with a retry, a circuit breaker
// and a timeout, around the same net/http Transport and loopback server. It
// is a module of its own, so that the core module does not depend on
// failsafe-go; it holds benchmarks and the test that the two transports
// under comparison behave alike, and no library code.
package httpbench
