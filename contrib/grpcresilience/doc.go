// Package grpcresilience runs gRPC calls under the policies of package
// resilience: client interceptors that retry, break circuits and bound
// time as gRFC A6 says a gRPC client should, without retrying what must not
// be sent twice, and server interceptors that shed the load a server cannot
// take with the answers gRPC clients understand.
//
//	cc, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(creds),
//		grpc.WithDisableRetry(), // the interceptor retries; see below
//		grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(
//			resilience.Chain(
//				retry.New(retry.WithBudget(retry.NewBudget(0.2, 10))),
//				grpcresilience.PerTarget(func(string) resilience.Policy { return circuitbreaker.New() }),
//				timeout.New(2*time.Second),
//			),
//			grpcresilience.WithIdempotent("/shop.Orders/Get", "/shop.Catalog/*"),
//		)),
//	)
//
// # Client
//
// [UnaryClientInterceptor] runs each call under a [resilience.Policy];
// each call the policy makes to its op is an attempt: one invocation of the
// next invoker. [StreamClientInterceptor] does the same for the start of a
// stream: opening it and waiting for its first response; the messages
// after that are the caller's. Attempts of one call never overlap, so a
// policy that runs attempts at once (hedging) is not for these
// interceptors.
//
// An attempt's status is, for the policies, either a failure, which a retry
// retries and a circuit breaker counts, or an answer, which they see as a
// success and the caller gets as it is:
//
//   - UNAVAILABLE is a failure.
//   - DEADLINE_EXCEEDED is a failure when the attempt's own deadline
//     passed, such as that of a timeout in the policy. When the caller's
//     ctx ended, the status is neither: the policies see the ctx's end
//     (errors.Is(err, context.DeadlineExceeded) or context.Canceled), which
//     a retry never retries and a breaker ignores if it was a cancellation.
//   - RESOURCE_EXHAUSTED is a failure only when the server sent a pushback
//     (below), or with [WithFailureCodes]: it often means a quota that
//     waiting a moment does not restore.
//   - Every other status, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
//     PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION, UNIMPLEMENTED,
//     INTERNAL, UNKNOWN and the rest, is an answer, never retried.
//
// [WithFailureCodes] replaces the set of failure codes. A failure reaches
// the policies as a [*StatusError].
//
// # Pushback
//
// A server asks a client to wait with the trailer grpc-retry-pushback-ms
// ([PushbackKey]), as gRFC A6 defines it: a non-negative integer is a wait
// in milliseconds, which the StatusError reports as its retry-after hint
// ([resilience.RetryAfter]), so that a retry.Retrier waits that long
// instead of its backoff (and gives up at once if that would pass the
// ctx's deadline); a negative or malformed value, or more than one, asks
// the client not to retry: the failure is marked with retry.Permanent, so
// that a retry gives up, while a breaker still counts it. A pushback of 0
// is no hint: the retry waits as its backoff says.
//
// # Idempotency
//
// gRPC has no idempotency marker: only the service's owner knows which
// methods may run twice. A call is made more than once only if its method
// is named by [WithIdempotent] ("/package.Service/Method", or
// "/package.Service/*" for all of a service's), or the call carries the
// [Idempotent] call option. Any other call gets one attempt whatever the
// policy: its failure is marked with retry.Permanent, and a policy that
// calls its op again all the same gets the first attempt's error back
// without another call.
//
// # grpc-go's own retries
//
// grpc-go retries by itself when the service config (from the resolver or
// grpc.WithDefaultServiceConfig) has a retryPolicy for the method. Under
// this interceptor each of its attempts would then be several, multiplying
// the load a retry budget is meant to bound and hiding failures from the
// breakers. Leave retryPolicy out of the service config, or dial with
// grpc.WithDisableRetry, when the interceptor's policy retries. The
// interceptor reads the method's config from the connection
// (grpc.ClientConn.GetMethodConfig) when it is about to make a second
// attempt and, if the config has a retryPolicy, logs a warning once per
// interceptor ([WithLogger]). grpc-go does not expose whether
// grpc.WithDisableRetry was given, so the warning is logged then too, and
// it does not see a retryPolicy that an xDS resolver sets per call.
// grpc-go's transparent retries, of an RPC that never left the client, go
// on either way: they are safe for every method.
//
// # What a call returns
//
//   - nil, or the answer's status, as the invoker returned it.
//   - When the policy gave up on a failure (attempts or budget spent, a
//     wait past the deadline, a pushback that stops retries), the last
//     attempt's status, as the invoker returned it.
//   - When a policy refused the call (an open breaker, a full bulkhead, a
//     rate limiter), a status error UNAVAILABLE, or RESOURCE_EXHAUSTED for
//     a rate limiter, whose error matches [resilience.ErrRejected] and the
//     refusal (circuitbreaker.ErrOpen...) through errors.Is, and holds the
//     [*StatusError] of an attempt that failed before the refusal.
//   - When a timeout of the policy ended the call, DEADLINE_EXCEEDED; when
//     the caller's ctx did, the status grpc-go gave the attempt, CANCELLED
//     or DEADLINE_EXCEEDED.
//
// status.Code and status.FromError read every one of them.
//
// # Per method, per target
//
// [PerMethod] and [PerTarget] give each method, or each connection's target,
// a policy of its own, typically a circuit breaker, so that one failing
// method or service does not refuse calls to the others. The interceptor
// tells them the call's method and target through the ctx. The keys kept
// are bounded in number and dropped when idle.
//
// # Server
//
// [UnaryServerInterceptor] and [StreamServerInterceptor] serve each call
// under a policy, typically a rate limiter or a bulkhead:
//
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(grpcresilience.UnaryServerInterceptor(resilience.Chain(
//			ratelimit.New(1000, 100),
//			bulkhead.New(200),
//		))),
//	)
//
// A call that the policy refuses is answered RESOURCE_EXHAUSTED for a rate
// limiter, UNAVAILABLE for anything else (a full bulkhead, an open
// breaker), with the refusal's retry-after hint in the pushback trailer, so
// that grpc-go clients with a retryPolicy, and this package's client
// interceptors, wait as long as the server asks. A refusal costs a few
// hundred nanoseconds and never reaches the handler.
package grpcresilience
