// Package resiliencehttp runs HTTP calls under the policies of package
// resilience: an http.RoundTripper that retries, breaks circuits and bounds
// time without retrying what must not be sent twice, without leaking a
// connection, and without breaking the RoundTripper contract.
//
//	client := &http.Client{Transport: resiliencehttp.NewTransport(http.DefaultTransport,
//		resiliencehttp.WithPolicy(resilience.Chain(
//			retry.New(),
//			resiliencehttp.PerHost(func(host string) resilience.Policy { return circuitbreaker.New() }),
//			timeout.New(2*time.Second),
//		)),
//	)}
//
// Without [WithPolicy], a [Transport] runs [Standard](): a limiter, a total
// timeout, a retry with a budget, a breaker per host and an attempt
// timeout.
//
// # Client
//
// Each request runs through the policy; each call the policy makes to its
// op is an attempt: one round trip through the next RoundTripper, with a
// request of its own: the caller's for the first (a shallow copy when a
// policy gave the attempt a ctx of its own), and a req.Clone with a fresh
// body from GetBody for each later one. Attempts of one request never
// overlap, so a policy that runs attempts at once (hedging) is not for the
// policy of a Transport: hedge with [WithHedge] instead.
//
// Whether a request may be sent more than once is decided from the request,
// before the first attempt, never from a response: it may if its method is
// idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or it carries an
// Idempotency-Key (or X-Idempotency-Key) header, and if its body can be
// sent again: none, http.NoBody, or a GetBody, which http.NewRequest sets
// for a bytes.Buffer, bytes.Reader or strings.Reader. [WithBufferBody] makes
// other bodies replayable by reading them into memory, up to a cap. Any
// other request is sent once, whatever the policy says: its attempt's
// error is marked with retry.Permanent, and a policy that calls again all
// the same gets the first attempt's error back without a round trip.
// (net/http's Transport still retries, by itself, a request it could not
// write to a connection that was closed.)
//
// A response is a failure for the policies when its status is 408, 429,
// 502, 503 or 504 ([WithFailOn500] adds 500; 501 never is); every other
// response, 4xx included, is an answer. [WithClassifier] decides instead.
// Inside the policy a failure is a [*StatusError], which a retry retries
// and a breaker counts, and whose Retry-After header, read by
// [ParseRetryAfter] before the body is touched, is the retry's wait: a
// retry.Retrier waits as long as it asks, and when that would pass the
// ctx's deadline it gives up at once, with that response, instead of
// waiting into the deadline.
//
// # What RoundTrip returns
//
//   - The response of the attempt that succeeded, with a nil error.
//   - When the policy gave up on a failing status (attempts or retry
//     budget spent, a wait past the deadline), the last response, with a
//     nil error and its body unread, as the RoundTripper contract asks: an
//     http.Client then returns it as any other response.
//   - When a policy refused the call (an open breaker, a full bulkhead, a
//     rate limiter), no response and the refusal, which matches
//     [resilience.ErrRejected]. If an attempt had failed with a status
//     before the refusal, the error also holds that [*StatusError], which
//     errors.As finds, with its response's body closed.
//   - Otherwise, no response and the policy's error: the transport's own
//     error, a timeout's (which matches context.DeadlineExceeded), the
//     caller's cancellation. It is not wrapped in a *url.Error, which the
//     http.Client adds once.
//
// RoundTrip closes the request's body in every case, and the body of every
// response it does not return: read up to 4 KiB ([WithDrainLimit]), so that
// the connection can be reused, and closed, before the next attempt.
//
// # Bodies and timeouts
//
// A response's body is read after RoundTrip returns, so the ctx of the
// attempt that got it must live until then: the Transport keeps it (see
// resilience.Keep), and reading the body to its end or closing it releases
// it. A timeout in the policy still bounds the read: an attempt timeout of
// 100ms ends the reading of a body that takes longer, with an error that
// matches timeout.ErrExceeded. Close every body, as net/http asks; one that
// is never closed holds its attempt's ctx until its deadline.
//
// # Hedging
//
// [WithHedge] hedges each attempt of a request that may be sent more than
// once: when its response is slow to come (by default, after the 95th
// percentile of recent latencies), the round trip is sent again beside the
// first, and the first response wins; a failing status sends the next at
// once. The round trips that lost are cancelled and the bodies of their
// responses drained and closed before RoundTrip returns; the policy sees
// one attempt, with the winner's response. The hedges add at most 5% to
// the requests by default, so that a server slow for everyone is not sent
// twice the load; see package hedge.
//
// # Per host
//
// [PerHost] gives each host its own policy, typically a circuit breaker,
// so that one failing server does not open the circuit to the others. The
// Transport tells it the request's host through the ctx. The hosts kept are
// bounded in number and dropped when idle.
//
// # Server
//
// [Handler] protects an http.Handler from more requests than it can serve:
//
//	h := resiliencehttp.Handler(mux,
//		resiliencehttp.WithRateLimit(100, 20),              // per client: 100/s, bursts of 20
//		resiliencehttp.WithLoadShedding(bulkhead.New(500)), // 500 requests at once
//		resiliencehttp.WithRequestTimeout(10*time.Second),
//	)
//
// Checks run cheapest first: the rate limit of the request's key, then the
// load shedder, then the request timeout, then next. The key is the host of
// RemoteAddr; X-Forwarded-For is believed only from peers in
// [WithTrustedProxies], whose rightmost untrusted address is the client, and
// [WithKey] sets any other key. A rate-limited request is answered 429 with
// Retry-After and the RateLimit and RateLimit-Policy fields of
// draft-ietf-httpapi-ratelimit-headers; a shed request 503 with Retry-After,
// the policy's hint or 1 second. [WithFallback] answers either instead, and
// [Refusal] tells it why. A refusal allocates nothing and costs a few
// hundred nanoseconds.
//
// At the deadline of [WithRequestTimeout] the handler's ctx is cancelled with
// a cause that matches timeout.ErrExceeded and, if nothing was written yet,
// the request is answered 503 (504 with [WithGateway]) at once; the
// handler's later writes return http.ErrHandlerTimeout. The handler runs on
// ServeHTTP's goroutine and ServeHTTP returns only after it, so no goroutine
// outlives ServeHTTP. A panic, http.ErrAbortHandler included, reaches the
// caller unchanged.
package resiliencehttp
