package grpcresilience

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// A ClientOption configures the interceptors made by
// [UnaryClientInterceptor] and [StreamClientInterceptor].
type ClientOption interface{ applyClient(*clientConfig) }

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyClient(c *clientConfig) { f(c) }

type clientConfig struct {
	methods   map[string]bool
	failures  uint32
	logger    *slog.Logger
	streamBuf int
}

// WithIdempotent names the methods that may be called more than once, by
// full name ("/package.Service/Method"), or all the methods of a service
// ("/package.Service/*"): their failures are retried as the policy says.
// A call to any other method is made once, unless it carries the
// [Idempotent] call option. gRPC has no idempotency marker of its own: only
// the service's owner knows which methods may run twice. Options add up.
// Default: none. Each name must start with "/" and have a method or "*"
// after a second "/".
func WithIdempotent(methods ...string) ClientOption {
	names := make([]string, len(methods))
	for i, m := range methods {
		j := strings.LastIndexByte(m, '/')
		if !strings.HasPrefix(m, "/") || j <= 1 || j == len(m)-1 {
			panic(fmt.Sprintf("grpcresilience: WithIdempotent(%q): want \"/package.Service/Method\" or \"/package.Service/*\"", m))
		}
		names[i] = strings.TrimSuffix(m, "*")
	}
	return clientOptionFunc(func(c *clientConfig) {
		if c.methods == nil {
			c.methods = make(map[string]bool, len(names))
		}
		for _, n := range names {
			c.methods[n] = true
		}
	})
}

// Idempotent returns a call option that marks one call as safe to make
// more than once, as [WithIdempotent] marks every call to a method:
//
//	reply, err := client.Get(ctx, req, grpcresilience.Idempotent())
//
// Other interceptors and grpc-go ignore it.
func Idempotent() grpc.CallOption { return idempotentOption{} }

type idempotentOption struct{ grpc.EmptyCallOption }

// WithFailureCodes sets the status codes that are failures for the
// policies, which a retry retries and a breaker counts, replacing the
// default set of UNAVAILABLE and DEADLINE_EXCEEDED. Whatever the set,
// RESOURCE_EXHAUSTED with a pushback is a failure, a status that ends an
// attempt because the caller's ctx ended is not one, and any other status
// is an answer: the policies see a success, the caller gets the status.
// Default: UNAVAILABLE, DEADLINE_EXCEEDED. Each code must be a valid code
// other than OK.
func WithFailureCodes(cs ...codes.Code) ClientOption {
	var set uint32
	for _, c := range cs {
		if c == codes.OK || c > codes.Unauthenticated {
			panic(fmt.Sprintf("grpcresilience: WithFailureCodes(%v): want codes from Canceled to Unauthenticated", c))
		}
		set |= 1 << c
	}
	return clientOptionFunc(func(c *clientConfig) { c.failures = set })
}

// WithLogger sets where the interceptor logs its one warning: that the
// service config of a connection asks grpc-go to retry a method that the
// policy retries. Default: slog.Default(). l must not be nil.
func WithLogger(l *slog.Logger) ClientOption {
	if l == nil {
		panic("grpcresilience: WithLogger: nil Logger")
	}
	return clientOptionFunc(func(c *clientConfig) { c.logger = l })
}

// WithStreamBuffer sets how many messages a stream of
// [StreamClientInterceptor] keeps, sent before its first response, so
// that a later attempt can send them again. A stream that sends more
// before its first response is opened at once and not retried after that.
// Default: 32. n must be in [1, 1<<16].
func WithStreamBuffer(n int) ClientOption {
	if n < 1 || n > 1<<16 {
		panic(fmt.Sprintf("grpcresilience: WithStreamBuffer(%d): want 1 <= n <= %d", n, 1<<16))
	}
	return clientOptionFunc(func(c *clientConfig) { c.streamBuf = n })
}

// A KeyOption configures the policy that [PerMethod] or [PerTarget]
// returns.
type KeyOption interface{ applyKey(*keyConfig) }

type keyOptionFunc func(*keyConfig)

func (f keyOptionFunc) applyKey(c *keyConfig) { f(c) }

type keyConfig struct {
	maxKeys int
	idle    time.Duration
}

// WithMaxKeys caps how many methods' or targets' policies are kept at
// once: past it, the least recently used are dropped, down to three
// quarters of n. Default: 10000. n must be in [1, 1<<24].
func WithMaxKeys(n int) KeyOption {
	if n < 1 || n > 1<<24 {
		panic(fmt.Sprintf("grpcresilience: WithMaxKeys(%d): want 1 <= n <= %d", n, 1<<24))
	}
	return keyOptionFunc(func(c *keyConfig) { c.maxKeys = n })
}

// WithIdleTimeout sets how long a method's or target's policy is kept
// without a call: one unused for d is dropped at the next sweep, and a
// later call gets a new one from newPolicy. Default: 5 minutes. d must be
// positive.
func WithIdleTimeout(d time.Duration) KeyOption {
	if d <= 0 {
		panic(fmt.Sprintf("grpcresilience: WithIdleTimeout(%v): want d > 0", d))
	}
	return keyOptionFunc(func(c *keyConfig) { c.idle = d })
}
