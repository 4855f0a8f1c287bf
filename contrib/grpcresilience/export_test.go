package grpcresilience

import (
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/resilience-go/resilience"
)

// KeysKept returns how many keys the policy of PerMethod or PerTarget
// keeps.
func KeysKept(p resilience.Policy) int64 { return int64(p.(*perKey).keys.Len()) }

// Pushback reads a pushback trailer as the interceptors do.
func Pushback(md metadata.MD) (wait time.Duration, ok, stop bool) { return pushback(md) }
