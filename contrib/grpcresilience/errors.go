package grpcresilience

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StatusError is the error with which an attempt tells its policies that
// the server answered with a failure code: by default UNAVAILABLE,
// DEADLINE_EXCEEDED of the attempt, and RESOURCE_EXHAUSTED with a pushback
// (see [WithFailureCodes]). A retry retries it, a circuit breaker counts
// it, and its RetryAfter method, which [resilience.RetryAfter] finds,
// reports the server's pushback.
//
// A StatusError seldom reaches the caller: when the policies give up on it,
// the call returns its Err, the status error as grpc-go made it. It reaches
// the caller only inside the error of a call that a policy refused after a
// failure, such as a breaker that opened between two attempts.
type StatusError struct {
	// Err is the attempt's error, as the invoker returned it.
	Err error
	// Code is its status code.
	Code codes.Code

	retryAt time.Time // when the server asked to be called again; zero if it did not
}

// Error returns Err's text.
func (e *StatusError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *StatusError) Unwrap() error { return e.Err }

// GRPCStatus returns Err's status, for status.FromError and status.Code.
func (e *StatusError) GRPCStatus() *status.Status { return status.Convert(e.Err) }

// RetryAfter returns how long from now until the time the server's
// pushback ([PushbackKey]) asked for, or zero (no hint) when it sent none
// or that time has passed.
func (e *StatusError) RetryAfter() time.Duration {
	if e.retryAt.IsZero() {
		return 0
	}
	return time.Until(e.retryAt)
}

// callError is a status error made for a call whose policy returned an
// error that is not a status: a refusal, a timeout, a cancellation.
type callError struct {
	code codes.Code
	err  error
}

func (e *callError) Error() string {
	return fmt.Sprintf("rpc error: code = %s desc = %v", e.code, e.err)
}

func (e *callError) Unwrap() error { return e.err }

func (e *callError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }

// afterError is a refusal by a policy that came after an attempt's
// failure.
type afterError struct {
	err  error
	last *StatusError
}

func (e *afterError) Error() string   { return fmt.Sprintf("%v (after %v)", e.err, e.last) }
func (e *afterError) Unwrap() []error { return []error{e.err, e.last} }

// endedError is the error of an attempt that a ctx ended: the status error
// grpc-go made, and the ctx's error, so that the policies see the ctx's
// end (a circuit breaker ignores a cancellation).
type endedError struct {
	err    error
	ctxErr error
}

func (e *endedError) Error() string   { return e.err.Error() }
func (e *endedError) Unwrap() []error { return []error{e.err, e.ctxErr} }
