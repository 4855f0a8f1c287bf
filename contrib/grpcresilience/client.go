package grpcresilience

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/keyed"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/retry"
)

// PushbackKey is the trailer in which a server asks a client to wait
// before it calls again, in milliseconds (gRFC A6): a non-negative decimal
// integer is a wait, anything else asks the client not to retry.
const PushbackKey = "grpc-retry-pushback-ms"

// UnaryClientInterceptor returns a client interceptor that runs each unary
// call under p, each call that p makes to its op being one attempt: one
// invocation of the next invoker, with the caller's request, reply and
// call options. Install it with grpc.WithChainUnaryInterceptor.
//
// An attempt that ends with a failure code (see the package documentation)
// reports a [*StatusError] to p, which a retry retries, waiting as the
// server's pushback asks, and a circuit breaker counts; any other status is
// an answer, which p sees as a success and the caller gets unchanged. A
// call to a method that is not idempotent ([WithIdempotent], [Idempotent])
// is made once, whatever p does.
//
// The call returns nil or a status error: the answer, or the last
// attempt's error when p gave up on a failure, as it came from the
// invoker; when p refused the call (an open breaker, a full bulkhead, a
// rate limiter), an error with code UNAVAILABLE (RESOURCE_EXHAUSTED for a
// rate limiter) that matches [resilience.ErrRejected]; when a timeout of p
// or the caller's ctx ended the call, DEADLINE_EXCEEDED or CANCELLED.
//
// UnaryClientInterceptor panics if p or an option is nil.
func UnaryClientInterceptor(p resilience.Policy, opts ...ClientOption) grpc.UnaryClientInterceptor {
	c := newClient("UnaryClientInterceptor", p, opts)
	do := resilience.Wrap(p, attemptUnary)
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		u := &unaryCall{ctx: ctx, invoker: invoker, req: req, reply: reply}
		u.rpc = rpc{c: c, method: method, cc: cc, replay: c.idempotent(method, opts), unary: u}
		u.opts = append(append(u.optsBuf[:0], opts...), grpc.Trailer(&u.trailer))
		return u.finish(do(u))
	}
}

// client is the configuration that a client interceptor shares between
// its calls.
type client struct {
	methods   map[string]bool // the idempotent methods, "/service/method", and services, "/service/"
	failures  uint32          // a bit per code
	logger    *slog.Logger
	streamBuf int
	warned    atomic.Bool // the warning about grpc-go's own retries was logged
}

func newClient(name string, p resilience.Policy, opts []ClientOption) *client {
	if keyed.IsNil(p) {
		panic("grpcresilience: " + name + ": nil Policy")
	}
	cfg := clientConfig{failures: 1<<codes.Unavailable | 1<<codes.DeadlineExceeded, streamBuf: 32}
	for _, o := range opts {
		if o == nil {
			panic("grpcresilience: " + name + ": nil ClientOption")
		}
		o.applyClient(&cfg)
	}
	logger := cfg.logger
	if logger == nil {
		logger = slog.Default()
	}
	return &client{methods: cfg.methods, failures: cfg.failures, logger: logger, streamBuf: cfg.streamBuf}
}

// idempotent reports whether calls to method may be made more than once:
// the method or its service was named by WithIdempotent, or the call
// carries the Idempotent call option.
func (c *client) idempotent(method string, opts []grpc.CallOption) bool {
	for _, o := range opts {
		if _, ok := o.(idempotentOption); ok {
			return true
		}
	}
	if len(c.methods) == 0 {
		return false
	}
	if c.methods[method] {
		return true
	}
	if i := lastSlash(method); i > 0 {
		return c.methods[method[:i+1]]
	}
	return false
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

// warnRetries logs, once per interceptor, that the service config of cc
// asks grpc-go to retry method itself, so that each attempt of the policy
// may be several of grpc-go's. grpc-go does not tell whether its retries
// were turned off with grpc.WithDisableRetry, so the warning is logged
// then too.
func (c *client) warnRetries(cc *grpc.ClientConn, method string) {
	if cc == nil || c.warned.Load() {
		return
	}
	if cc.GetMethodConfig(method).RetryPolicy == nil {
		return
	}
	if c.warned.CompareAndSwap(false, true) {
		c.logger.Warn("grpcresilience: the service config has a retryPolicy for the method, so grpc-go retries each attempt of the policy; remove it or dial with grpc.WithDisableRetry",
			slog.String("grpc.method", method), slog.String("grpc.target", cc.Target()))
	}
}

// rpc is what the attempts of one call share with the policies, which
// PerMethod and PerTarget find through the ctx.
type rpc struct {
	c      *client
	method string
	cc     *grpc.ClientConn
	replay bool // attempts after the first may be made
	unary  *unaryCall
	stream *clientStream

	attempts int
	err      error // the first attempt's error, for a call that is not replayed
}

// callKey is the ctx key under which a call answers with its *rpc.
type callKey struct{}

// rpcOf returns the call whose attempt ctx is, or nil when ctx is not an
// interceptor's.
func rpcOf(ctx context.Context) *rpc {
	r, _ := ctx.Value(callKey{}).(*rpc)
	return r
}

// next counts an attempt and reports, for one after the first, whether it
// may be made; err is then what an attempt that may not returns.
func (r *rpc) next() (ok bool, err error) {
	r.attempts++
	if r.attempts == 1 {
		return true, nil
	}
	if !r.replay {
		return false, r.err
	}
	if r.attempts == 2 {
		r.c.warnRetries(r.cc, r.method)
	}
	return true, nil
}

// classify turns err, the status error that ended an attempt under
// attemptCtx, with trailer, into what the attempt reports to the policies,
// and reports whether it is a failure. An answer is reported as nil.
func (r *rpc) classify(callerCtx, attemptCtx context.Context, err error, trailer metadata.MD) (failure *StatusError, perr error) {
	if ctxErr := callerCtx.Err(); ctxErr != nil {
		// The caller's ctx ended: not the server's failure.
		return nil, r.mark(&endedError{err: err, ctxErr: ctxErr})
	}
	code := status.Code(err)
	wait, hinted, stop := pushback(trailer)
	if !r.c.fails(code) && !(code == codes.ResourceExhausted && (hinted || stop)) {
		if attemptCtx.Err() != nil && (code == codes.DeadlineExceeded || code == codes.Canceled) {
			// A policy's ctx ended the attempt, as a timeout does.
			return nil, r.mark(&endedError{err: err, ctxErr: context.Cause(attemptCtx)})
		}
		return nil, nil
	}
	se := &StatusError{Err: err, Code: code}
	if hinted {
		se.retryAt = time.Now().Add(wait)
	}
	if stop || !r.replay {
		r.err = retry.Permanent(se)
		return se, r.err
	}
	return se, se
}

// mark returns err, an attempt's error, marked permanent and kept when the
// call is not replayed.
func (r *rpc) mark(err error) error {
	if !r.replay {
		err = retry.Permanent(err)
		r.err = err
	}
	return err
}

func (c *client) fails(code codes.Code) bool { return code < 32 && c.failures&(1<<code) != 0 }

// pushback reads the server's pushback from trailer: a wait, whether there
// was one, and whether the server asked not to retry (a negative or
// malformed value, or more than one).
func pushback(trailer metadata.MD) (wait time.Duration, ok, stop bool) {
	v := trailer[PushbackKey]
	switch len(v) {
	case 0:
		return 0, false, false
	case 1:
	default:
		return 0, false, true
	}
	ms, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || ms < 0 {
		return 0, false, true
	}
	if ms > int64(maxDuration/time.Millisecond) {
		return maxDuration, true, false
	}
	return time.Duration(ms) * time.Millisecond, true, false
}

const maxDuration = time.Duration(1<<63 - 1)

// unaryCall is one unary call. It is the ctx the policy runs under, so
// that an attempt finds it without a context.WithValue. Attempts of one
// call never overlap (the policy contract), so its fields need no lock.
type unaryCall struct {
	ctx context.Context // the caller's
	rpc
	invoker    grpc.UnaryInvoker
	req, reply any
	opts       []grpc.CallOption
	optsBuf    [4]grpc.CallOption
	trailer    metadata.MD

	ok     bool         // the last attempt succeeded
	answer error        // the status of the last attempt, an answer
	last   *StatusError // the failure of the last attempt
}

func (u *unaryCall) Deadline() (time.Time, bool) { return u.ctx.Deadline() }
func (u *unaryCall) Done() <-chan struct{}       { return u.ctx.Done() }
func (u *unaryCall) Err() error                  { return u.ctx.Err() }

func (u *unaryCall) Value(key any) any {
	if key == (callKey{}) {
		return &u.rpc
	}
	return u.ctx.Value(key)
}

// attemptUnary is the op the policy runs: one invocation.
func attemptUnary(ctx context.Context) error {
	r := rpcOf(ctx)
	if r == nil {
		panic("grpcresilience: the policy called its op with a ctx that is not a child of the one it was given")
	}
	u := r.unary
	if ok, err := r.next(); !ok {
		return err
	}
	u.ok, u.answer, u.last, u.trailer = false, nil, nil, nil
	err := u.invoker(ctx, r.method, u.req, u.reply, r.cc, u.opts...)
	if err == nil {
		u.ok = true
		return nil
	}
	se, perr := r.classify(u.ctx, ctx, err, u.trailer)
	u.last = se
	if se == nil && perr == nil {
		u.answer = err
	}
	return perr
}

// finish turns the policy's result into the call's.
func (u *unaryCall) finish(err error) error {
	if err == nil {
		switch {
		case u.ok:
			return nil
		case u.answer != nil:
			return u.answer
		case u.last != nil: // a policy answered for the failure, as a fallback does
			return u.last.Err
		}
		return errNoAttempt
	}
	return result(u.ctx, err, u.last)
}

// errNoAttempt is returned when the policy reports success without an
// attempt that succeeded.
var errNoAttempt = status.Error(codes.Internal, "grpcresilience: the policy succeeded without an attempt that did")

// result turns a policy's error into the status error of a call whose
// last attempt failed with last, if any.
func result(ctx context.Context, err error, last *StatusError) error {
	if errors.Is(err, resilience.ErrRejected) {
		code := codes.Unavailable
		if errors.Is(err, ratelimit.ErrLimited) {
			code = codes.ResourceExhausted
		}
		if last != nil && !errors.Is(err, last) {
			err = &afterError{err: err, last: last}
		}
		return &callError{code: code, err: err}
	}
	var ended *endedError
	if errors.As(err, &ended) && ended.ctxErr == ctx.Err() {
		return ended.err // the caller's ctx ended the attempt: its status, as grpc-go made it
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &callError{code: codes.DeadlineExceeded, err: err}
	}
	if errors.Is(err, context.Canceled) {
		return &callError{code: codes.Canceled, err: err}
	}
	if last != nil && errors.Is(err, last) {
		return last.Err // the policies gave up on a failure
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return &callError{code: codes.Unknown, err: err}
}
