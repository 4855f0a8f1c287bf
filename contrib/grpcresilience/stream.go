package grpcresilience

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/retry"
)

// StreamClientInterceptor returns a client interceptor that runs the start
// of each stream under p: opening the stream and waiting for its first
// response. Later messages, both ways, are the caller's: the policy has
// returned by then. Install it with grpc.WithChainStreamInterceptor.
//
// The stream is opened when the caller first asks for a response (RecvMsg,
// or Header), or sends more messages than [WithStreamBuffer] keeps; until
// then SendMsg and CloseSend only keep what they are given. Each call that
// p makes to its op is one attempt: it opens a stream, sends it the
// messages kept so far, and reads the first response (a message, the
// headers, or the end of the stream). An attempt whose stream ends with a
// failure code reports a [*StatusError] to p, as a unary attempt does, and
// the next attempt sends the kept messages again; a message, the headers,
// a clean end or any other status is an answer, which commits the stream.
// A stream of a method that is not idempotent ([WithIdempotent],
// [Idempotent]) gets one attempt, whatever p does.
//
// Messages sent while an attempt is open go to its stream at once, and are
// kept for the next attempt while the buffer has room; once it is full
// the stream is not retried. A message sent while no attempt is open and
// the buffer is full, while the policy waits to make another attempt,
// aborts the stream, as it can be neither sent nor kept: SendMsg returns a
// RESOURCE_EXHAUSTED status, and so does RecvMsg. As grpc-go asks, do not
// modify a message after SendMsg.
//
// When p gives up, or refuses the stream, RecvMsg returns the status that
// a unary call would return (see [UnaryClientInterceptor]), and so do
// later calls; SendMsg then returns io.EOF. Each attempt's stream runs
// under a ctx of the caller's: a timeout in p ends an attempt that has not
// had its first response by the timeout's deadline, and never a stream
// after that.
//
// StreamClientInterceptor panics if p or an option is nil.
func StreamClientInterceptor(p resilience.Policy, opts ...ClientOption) grpc.StreamClientInterceptor {
	c := newClient("StreamClientInterceptor", p, opts)
	do := resilience.Wrap(p, attemptStream)
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		s := &clientStream{ctx: ctx, do: do, desc: desc, streamer: streamer, opts: opts}
		s.rpc = rpc{c: c, method: method, cc: cc, replay: c.idempotent(method, opts), stream: s}
		return s, nil
	}
}

// What made a stream start its policy.
const (
	byRecv = iota
	byHeader
	bySend
)

// clientStream is the stream that StreamClientInterceptor returns. It is
// the ctx the policy runs under.
type clientStream struct {
	ctx context.Context // the caller's
	rpc
	do       resilience.Op
	desc     *grpc.StreamDesc
	streamer grpc.Streamer
	opts     []grpc.CallOption

	committed atomic.Bool // the policy has returned: fail, or cur, is the stream
	startMu   sync.Mutex  // held by the call that runs the policy

	sendMu sync.Mutex // held by a send before the commit, and by an attempt's replay

	mu       sync.Mutex
	started  bool // the policy runs, or ran
	buf      []any
	closed   bool  // CloseSend was called
	overflow bool  // messages were sent that buf does not hold: no later attempt
	aborted  error // a send found no room: the stream ends with this
	cur      grpc.ClientStream
	cancel   context.CancelCauseFunc // cur's

	// Set by the attempts, read by the call that runs the policy once it
	// has returned.
	trigger  int
	first    any         // the message of the RecvMsg that started the policy
	header   metadata.MD // the headers, for byHeader
	firstErr error       // the end of the stream at its first response: io.EOF or an answer
	sendErr  error       // a replay's error, for bySend
	ok       bool        // the last attempt succeeded
	last     *StatusError
	lastErr  error // the last attempt's error, as it reported it

	fail error // set before committed: the stream failed with this
}

func (s *clientStream) Deadline() (time.Time, bool) { return s.ctx.Deadline() }
func (s *clientStream) Done() <-chan struct{}       { return s.ctx.Done() }
func (s *clientStream) Err() error                  { return s.ctx.Err() }

func (s *clientStream) Value(key any) any {
	if key == (callKey{}) {
		return &s.rpc
	}
	return s.ctx.Value(key)
}

// errRetried is the cause with which an attempt's stream is cancelled
// when the next attempt starts.
var errRetried = errors.New("grpcresilience: the stream is retried")

// attemptStream is the op the policy runs: one stream, up to its first
// response.
func attemptStream(ctx context.Context) error {
	r := rpcOf(ctx)
	if r == nil {
		panic("grpcresilience: the policy called its op with a ctx that is not a child of the one it was given")
	}
	s := r.stream
	if ok, err := r.next(); !ok {
		return err
	}
	s.mu.Lock()
	old, oldCancel := s.cur, s.cancel
	s.cur, s.cancel = nil, nil
	overflow, aborted := s.overflow, s.aborted
	s.mu.Unlock()
	if old != nil {
		oldCancel(errRetried)
	}
	switch {
	case aborted != nil:
		return retry.Permanent(aborted)
	case overflow: // the messages of the last attempt are no longer all kept
		return retry.Permanent(s.lastErr)
	}
	s.ok, s.last, s.lastErr, s.firstErr, s.sendErr, s.header = false, nil, nil, nil, nil, nil

	sctx, cancel := context.WithCancelCause(s.ctx)
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	cs, err := s.streamer(sctx, s.desc, r.cc, r.method, s.opts...)
	if err != nil {
		stop()
		cancel(nil)
		return s.failed(ctx, err, nil)
	}

	s.sendMu.Lock()
	s.mu.Lock()
	if s.aborted != nil {
		s.mu.Unlock()
		s.sendMu.Unlock()
		stop()
		cancel(s.aborted)
		return retry.Permanent(s.aborted)
	}
	s.cur, s.cancel = cs, cancel
	msgs, closed := s.buf, s.closed
	s.mu.Unlock()
	for _, m := range msgs {
		if err = cs.SendMsg(m); err != nil {
			break
		}
	}
	if err == nil && closed {
		err = cs.CloseSend()
	}
	s.sendMu.Unlock()

	switch s.trigger {
	case byRecv:
		err = cs.RecvMsg(s.first)
	case byHeader:
		if s.header, err = cs.Header(); err == nil && s.header == nil {
			// The stream ended without headers: RecvMsg tells how,
			// without a message to read.
			err = cs.RecvMsg(nil)
		}
	case bySend:
		s.sendErr = err // the caller learns how the stream ended from RecvMsg
		err = nil
	}
	if !stop() && err == nil {
		// The attempt's ctx ended as the response came, and cancels the
		// stream: the attempt failed.
		err = status.FromContextError(ctx.Err()).Err()
	}
	if err == nil || err == io.EOF {
		s.ok, s.firstErr = true, err
		return nil
	}
	s.mu.Lock()
	if s.overflow {
		r.replay = false
	}
	s.mu.Unlock()
	return s.failed(ctx, err, cs.Trailer())
}

// failed returns what an attempt whose stream ended with err reports.
func (s *clientStream) failed(ctx context.Context, err error, trailer metadata.MD) error {
	if _, ok := status.FromError(err); !ok {
		err = status.Convert(err).Err()
	}
	se, perr := s.classify(s.ctx, ctx, err, trailer)
	if se == nil && perr == nil { // an answer
		s.ok, s.firstErr = true, err
		return nil
	}
	s.last, s.lastErr = se, perr
	return perr
}

// start runs the policy, once, for the call of the caller that needs the
// stream open, and reports whether this call ran it.
func (s *clientStream) start(trigger int, m any) bool {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.committed.Load() {
		return false
	}
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	s.trigger, s.first = trigger, m
	err := s.do(s)
	s.first = nil
	s.mu.Lock()
	switch {
	case err == nil && s.ok && s.cur != nil:
	case err == nil && s.ok: // the stream could not be opened, with an answer
		s.fail = s.firstErr
	case err == nil && s.last != nil: // a policy answered for the failure, as a fallback does
		s.fail = s.last.Err
	case err == nil:
		s.fail = errNoAttempt
	default:
		s.fail = result(s.ctx, err, s.last)
	}
	if s.fail != nil && s.cancel != nil {
		s.cancel(s.fail)
	}
	s.buf = nil
	s.mu.Unlock()
	s.committed.Store(true)
	return true
}

// end releases the ctx of a stream that ended.
func (s *clientStream) end() {
	if s.cancel != nil {
		s.cancel(nil)
	}
}

func (s *clientStream) RecvMsg(m any) error {
	if !s.committed.Load() && s.start(byRecv, m) {
		switch {
		case s.fail != nil:
			return s.fail
		case s.firstErr != nil:
			s.end()
			return s.firstErr
		}
		return nil
	}
	if s.fail != nil {
		return s.fail
	}
	err := s.cur.RecvMsg(m)
	if err != nil {
		s.end()
	}
	return err
}

func (s *clientStream) Header() (metadata.MD, error) {
	if !s.committed.Load() && s.start(byHeader, nil) {
		if s.fail != nil {
			return nil, s.fail
		}
		return s.header, nil
	}
	if s.fail != nil {
		return nil, s.fail
	}
	return s.cur.Header()
}

func (s *clientStream) Trailer() metadata.MD {
	if !s.committed.Load() || s.cur == nil {
		return nil
	}
	return s.cur.Trailer()
}

func (s *clientStream) Context() context.Context {
	if !s.committed.Load() || s.cur == nil {
		return s.ctx
	}
	return s.cur.Context()
}

func (s *clientStream) CloseSend() error {
	if s.committed.Load() {
		if s.fail != nil {
			return nil
		}
		return s.cur.CloseSend()
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	s.closed = true
	cur := s.cur
	s.mu.Unlock()
	if cur != nil {
		return cur.CloseSend()
	}
	return nil
}

func (s *clientStream) SendMsg(m any) error {
	if s.committed.Load() {
		if s.fail != nil {
			return io.EOF
		}
		return s.cur.SendMsg(m)
	}
	s.sendMu.Lock()
	s.mu.Lock()
	if s.committed.Load() { // the policy returned while this send waited
		s.mu.Unlock()
		s.sendMu.Unlock()
		return s.SendMsg(m)
	}
	if s.aborted != nil {
		s.mu.Unlock()
		s.sendMu.Unlock()
		return s.aborted
	}
	cur, limit, replay := s.cur, s.c.streamBuf, s.replay
	keep := cur == nil || replay && !s.overflow
	open := false
	switch {
	case !keep:
	case len(s.buf) < limit:
		s.buf = append(s.buf, m)
	case !s.started: // open the stream now, and send them all
		s.buf = append(s.buf, m)
		open = true
	case cur != nil: // sent on cur, but not kept for another attempt
		s.overflow = true
	default:
		s.aborted = status.Error(codes.ResourceExhausted, fmt.Sprintf(
			"grpcresilience: more than %d messages sent before the first response, while no attempt was open", limit))
		s.mu.Unlock()
		s.sendMu.Unlock()
		return s.aborted
	}
	s.mu.Unlock()
	var err error
	if cur != nil {
		err = cur.SendMsg(m)
		if replay && err != nil {
			err = nil // kept for the next attempt; RecvMsg tells how this one ended
		}
	}
	s.sendMu.Unlock()
	if open && s.start(bySend, nil) {
		if s.fail != nil {
			return io.EOF
		}
		return s.sendErr
	}
	return err
}
