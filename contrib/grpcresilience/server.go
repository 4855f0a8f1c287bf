package grpcresilience

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/internal/keyed"
	"github.com/resilience-go/resilience/ratelimit"
)

// UnaryServerInterceptor returns a server interceptor that serves each
// unary call under p, typically a rate limiter or a bulkhead that bounds
// the calls served at once, to shed the load that the server cannot take.
// Install it with grpc.ChainUnaryInterceptor.
//
// A call that p does not run (p refused it, with an error that matches
// [resilience.ErrRejected]) is answered RESOURCE_EXHAUSTED when a rate
// limiter refused it (the error matches ratelimit.ErrLimited) and
// UNAVAILABLE otherwise, with the refusal's text; when the refusal carries
// a retry-after hint ([resilience.RetryAfter]), the answer's trailer asks
// the client to wait that long ([PushbackKey], in milliseconds rounded
// up), which grpc-go's retries and this package's client interceptors
// honour. A call whose ctx ended before p ran it is answered with the
// ctx's status (CANCELLED or DEADLINE_EXCEEDED).
//
// The op that p runs calls the handler; it returns the handler's error
// when its code is UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
// INTERNAL or UNKNOWN (signs of a server in trouble, which a breaker or an
// adaptive limiter should count) and nil for any other outcome, an answer.
// The call returns the handler's reply and error unchanged. p should run
// op at most once: a second call returns the first one's error and does
// not call the handler again.
//
// UnaryServerInterceptor panics if p is nil.
func UnaryServerInterceptor(p resilience.Policy) grpc.UnaryServerInterceptor {
	if keyed.IsNil(p) {
		panic("grpcresilience: UnaryServerInterceptor: nil Policy")
	}
	pool := sync.Pool{New: func() any {
		c := new(serverCall)
		c.op = c.runUnary
		return c
	}}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		c := pool.Get().(*serverCall)
		c.req, c.handler = req, handler
		err := p.Do(ctx, c.op)
		ran, resp, herr := c.ran, c.resp, c.herr
		*c = serverCall{op: c.op}
		pool.Put(c)
		if ran {
			return resp, herr
		}
		return nil, refuse(ctx, err, func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) })
	}
}

// StreamServerInterceptor returns a server interceptor that serves each
// stream under p, as [UnaryServerInterceptor] serves a unary call: p runs
// one op, which serves the whole stream. A bulkhead in p bounds the streams
// served at once. Install it with grpc.ChainStreamInterceptor.
// StreamServerInterceptor panics if p is nil.
func StreamServerInterceptor(p resilience.Policy) grpc.StreamServerInterceptor {
	if keyed.IsNil(p) {
		panic("grpcresilience: StreamServerInterceptor: nil Policy")
	}
	pool := sync.Pool{New: func() any {
		c := new(serverCall)
		c.op = c.runStream
		return c
	}}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		c := pool.Get().(*serverCall)
		c.srv, c.ss, c.shandler = srv, ss, handler
		ctx := ss.Context()
		err := p.Do(ctx, c.op)
		ran, herr := c.ran, c.herr
		*c = serverCall{op: c.op}
		pool.Put(c)
		if ran {
			return herr
		}
		return refuse(ctx, err, ss.SetTrailer)
	}
}

// serverCall is one call served under the policy. Its op is bound once,
// when the pool makes it, so that a call allocates no closure.
type serverCall struct {
	op resilience.Op

	req     any
	handler grpc.UnaryHandler

	srv      any
	ss       grpc.ServerStream
	shandler grpc.StreamHandler

	ran  bool
	resp any
	herr error
}

func (c *serverCall) runUnary(ctx context.Context) error {
	if c.ran {
		return serverFailure(c.herr)
	}
	c.ran = true
	c.resp, c.herr = c.handler(ctx, c.req)
	return serverFailure(c.herr)
}

func (c *serverCall) runStream(ctx context.Context) error {
	if c.ran {
		return serverFailure(c.herr)
	}
	c.ran = true
	ss := c.ss
	if ctx != ss.Context() {
		ss = &ctxStream{ServerStream: ss, ctx: ctx}
	}
	c.herr = c.shandler(c.srv, ss)
	return serverFailure(c.herr)
}

// ctxStream is a server stream whose handler runs under a ctx that a
// policy made, such as a timeout's.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// serverFailure returns err if its code is a sign of a server in trouble,
// and nil otherwise.
func serverFailure(err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unknown:
		return err
	}
	return nil
}

// refuse returns the status of a call that the policy did not run, for
// err, and sets the pushback trailer through setTrailer.
func refuse(ctx context.Context, err error, setTrailer func(metadata.MD)) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	if err == nil {
		return errNotServed
	}
	code := codes.Unavailable
	if errors.Is(err, ratelimit.ErrLimited) {
		code = codes.ResourceExhausted
	}
	if d, ok := resilience.RetryAfter(err); ok {
		ms := int64((d + 999_999) / 1_000_000) // rounded up
		setTrailer(metadata.MD{PushbackKey: []string{strconv.FormatInt(ms, 10)}})
	}
	return status.Error(code, err.Error())
}

// errNotServed answers a call whose policy succeeded without running it.
var errNotServed = status.Error(codes.Internal, "grpcresilience: the policy succeeded without serving the call")
