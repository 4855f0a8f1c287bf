// Package resilienceotel records the events of the resilience policies and
// components as OpenTelemetry metrics and span events, reports the state of
// breakers, bulkheads, limiters, outboxes and sagas as observable
// instruments, and traces saga steps and outbox messages. Its import path
// is github.com/resilience-go/resilience/contrib/otel, a module of its own
// so that the core module needs no OpenTelemetry; import it under its
// name:
//
//	import resilienceotel "github.com/resilience-go/resilience/contrib/otel"
//
//	obs, err := resilienceotel.NewObserver() // the global MeterProvider
//	if err != nil { ... }
//	b := circuitbreaker.New(circuitbreaker.WithName("payments"),
//		circuitbreaker.WithObserver(obs))
//	reg, err := resilienceotel.RegisterBreaker(b)
//	defer reg.Unregister()
//
// Durations are in seconds. Attributes are bounded: a policy's kind and the
// name given to it with WithName, an outcome, a state, and the type of an
// error ([ErrorType]), never an error's message, a key or an ID. Give each
// policy one name for all its calls, never a name per call. The meter and
// tracer are named [ScopeName].
//
// # Metrics from events
//
// An [Observer] records every [resilience.Event] it is given:
//
//	name                                  instrument  unit          attributes
//	resilience.calls                      counter     {call}        kind, name, outcome, error.type
//	resilience.call.duration              histogram   s             kind, name, outcome, error.type
//	resilience.attempts                   histogram   {attempt}     kind, name, outcome, error.type
//	resilience.retry.delay                histogram   s             kind, name, error.type
//	resilience.circuitbreaker.transitions counter     {transition}  name, from_state, to_state, cause
//	resilience.outbox.messages            counter     {message}     name, outcome, error.type
//	resilience.events                     counter     {event}       kind, name, event, error.type
//
// kind is resilience.policy.kind ("retry", "circuitbreaker", ...), name
// resilience.policy.name, outcome resilience.outcome, event
// resilience.event; from_state, to_state and cause are resilience.from_state,
// resilience.to_state ("closed", "open", "half-open", "forced-open",
// "disabled", "metrics-only") and resilience.cause ("failure rate", ...).
// error.type is set only for an event with an error. A call's outcome is
// success, failure, ignored, rejected, timeout or fallback; an outbox
// message's published, failed, dead or stale. resilience.attempts is
// recorded once per call, by the policies that count attempts, with gRPC
// A96's buckets 1 to 5; resilience.retry.delay once per retry, with the wait
// before it. resilience.events counts the rest by their kind: a retry that
// gave up, an overrun, a saga step started or compensated, dead sagas, an
// operator's action, a component's own errors.
//
// # Metrics from components
//
// The Register functions report what a component holds, read at each
// collection, until the returned registration's Unregister. Nothing is
// registered unless asked for: there is no global registry.
//
//	name                                  instrument      unit       attributes          from
//	resilience.circuitbreaker.state       updowncounter   1          name, state         RegisterBreaker
//	resilience.bulkhead.inflight          updowncounter   {call}     name                RegisterBulkhead
//	resilience.bulkhead.queued            updowncounter   {call}     name                RegisterBulkhead
//	resilience.bulkhead.limit             updowncounter   {call}     name                RegisterBulkhead
//	resilience.bulkhead.rejected          counter         {call}     name                RegisterBulkhead
//	resilience.ratelimit.rejected         counter         {call}     name                RegisterLimiter, RegisterKeyedLimiter
//	resilience.ratelimit.keys             updowncounter   {key}      name                RegisterKeyedLimiter
//	resilience.outbox.backlog             updowncounter   {message}  name                RegisterOutbox
//	resilience.outbox.oldest_age          gauge           s          name                RegisterOutbox
//	resilience.outbox.dead                updowncounter   {message}  name                RegisterOutbox
//	resilience.saga.started               counter         {saga}     name                RegisterSagas
//	resilience.saga.ended                 counter         {saga}     name, saga.status   RegisterSagas
//	resilience.saga.instances             updowncounter   {saga}     name, saga.status   RegisterSagas
//	resilience.saga.orphaned              updowncounter   {saga}     name                RegisterSagas
//
// state is resilience.state, with one series per state, 1 for the breaker's
// and 0 for the others, as OpenTelemetry's hw.status does: a sum by state
// counts the breakers in each. saga.status is resilience.saga.status. The
// counters are cumulative since the component was made. Read a breaker's
// state for dashboards and alerts, never for a health check: an open
// breaker means that a dependency is down, not this service.
//
// # Traces
//
// An Observer adds an event to the span of the call's ctx, when it is
// recording: [SpanEventRetry] for each retry (resilience.attempt,
// resilience.delay in seconds, error.type), [SpanEventRejected] for each
// rejection (resilience.delay, the retry-after hint, and error.type) and
// [SpanEventStateChange] for each state change of a policy
// (resilience.from_state, resilience.to_state, resilience.cause), each with
// resilience.policy.kind and resilience.policy.name.
//
// [SagaSpans] is a policy, for saga.WithPolicy, that runs each call of a
// saga step in a span with the saga's ID. [InjectMessage] writes the span
// context of the work that enqueues an outbox message into its headers, and
// [Publisher] wraps an outbox.Publisher to publish each message in a
// producer span linked to that work.
package resilienceotel
