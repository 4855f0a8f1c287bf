package grpcresilience_test

import (
	"context"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/contrib/grpcresilience"
	"github.com/resilience-go/resilience/retry"
	"github.com/resilience-go/resilience/timeout"
)

// pushbackInvoker returns an invoker that fails its first n calls with
// UNAVAILABLE and the pushback trailer, which it hands to the caller
// through the grpc.Trailer call option as grpc-go does, and succeeds
// after; it calls called at each call.
func pushbackInvoker(n int, pushback string, called func()) grpc.UnaryInvoker {
	calls := 0
	return func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		called()
		calls++
		if calls > n {
			return nil
		}
		for _, o := range opts {
			if t, ok := o.(grpc.TrailerCallOption); ok {
				*t.TrailerAddr = metadata.Pairs(grpcresilience.PushbackKey, pushback)
			}
		}
		return status.Error(codes.Unavailable, "busy")
	}
}

// TestUnaryWaitsThePushback runs a call whose invoker fails twice with a
// pushback, in virtual time: the retry waits exactly what the server
// asked, not its backoff's hour, and nothing outlives the call.
func TestUnaryWaitsThePushback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(retry.Constant(time.Hour)))
		ic := grpcresilience.UnaryClientInterceptor(r, grpcresilience.WithIdempotent("/svc.S/M"))
		var at []time.Duration
		start := time.Now()
		invoker := pushbackInvoker(2, "250", func() { at = append(at, time.Since(start)) })
		require.NoError(t, ic(context.Background(), "/svc.S/M", nil, nil, nil, invoker))
		assert.Equal(t, []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond}, at)
	})
}

// TestUnaryAttemptTimeoutVirtual runs attempts under a timeout in virtual
// time: each attempt that outlives the timeout is a failure, retried, and
// the call ends with DEADLINE_EXCEEDED once the retry gives up.
func TestUnaryAttemptTimeoutVirtual(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := resilience.Chain(retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(time.Second))),
			timeout.New(100*time.Millisecond))
		ic := grpcresilience.UnaryClientInterceptor(p, grpcresilience.WithIdempotent("/svc.S/*"))
		calls := 0
		hang := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			calls++
			<-ctx.Done()
			return status.FromContextError(ctx.Err()).Err()
		}
		start := time.Now()
		err := ic(context.Background(), "/svc.S/M", nil, nil, nil, hang)
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "err: %v", err)
		assert.Equal(t, 3, calls)
		assert.Equal(t, 3*100*time.Millisecond+2*time.Second, time.Since(start))
	})
}

// TestUnaryPushbackParsing reads trailers as gRFC A6 asks.
func TestUnaryPushbackParsing(t *testing.T) {
	tests := []struct {
		values   []string
		wait     time.Duration
		ok, stop bool
	}{
		{nil, 0, false, false},
		{[]string{"0"}, 0, true, false},
		{[]string{"1500"}, 1500 * time.Millisecond, true, false},
		{[]string{"-1"}, 0, false, true},
		{[]string{""}, 0, false, true},
		{[]string{"1s"}, 0, false, true},
		{[]string{"+5"}, 5 * time.Millisecond, true, false},
		{[]string{"1", "2"}, 0, false, true},
		{[]string{"99999999999999999"}, time.Duration(1<<63 - 1), true, false},
	}
	for _, tt := range tests {
		md := metadata.MD{}
		if tt.values != nil {
			md[grpcresilience.PushbackKey] = tt.values
		}
		wait, ok, stop := grpcresilience.Pushback(md)
		assert.Equal(t, tt.wait, wait, "%q", tt.values)
		assert.Equal(t, tt.ok, ok, "%q", tt.values)
		assert.Equal(t, tt.stop, stop, "%q", tt.values)
	}
}

func FuzzPushback(f *testing.F) {
	for _, s := range []string{"0", "12", "-1", "x", "", "9223372036854775807", "+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		wait, ok, stop := grpcresilience.Pushback(metadata.MD{grpcresilience.PushbackKey: {s}})
		if ok == stop {
			t.Fatalf("%q: ok %v and stop %v: want exactly one", s, ok, stop)
		}
		if wait < 0 || !ok && wait != 0 {
			t.Fatalf("%q: wait %v, ok %v", s, wait, ok)
		}
	})
}

// TestStreamOpenFailures calls the stream interceptor with a streamer that
// cannot open the stream: a failure is retried, an answer is not, and the
// caller gets either from RecvMsg.
func TestStreamOpenFailures(t *testing.T) {
	tests := []struct {
		code  codes.Code
		calls int
	}{
		{codes.Unavailable, 3},
		{codes.PermissionDenied, 1},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				calls := 0
				streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
					calls++
					return nil, status.Error(tt.code, "cannot open")
				}
				r := retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(time.Second)))
				ic := grpcresilience.StreamClientInterceptor(r, grpcresilience.WithIdempotent("/svc.S/*"))
				s, err := ic(context.Background(), &grpc.StreamDesc{ServerStreams: true}, nil, "/svc.S/M", streamer)
				require.NoError(t, err)
				require.NoError(t, s.SendMsg("request"), "kept until the first response is asked for")
				require.NoError(t, s.CloseSend())
				assert.Zero(t, calls, "not opened yet")
				err = s.RecvMsg(new(string))
				assert.Equal(t, tt.code, status.Code(err), "err: %v", err)
				assert.Equal(t, "cannot open", status.Convert(err).Message())
				assert.Equal(t, tt.calls, calls)
				assert.Equal(t, io.EOF, s.SendMsg("more"), "the stream has ended")
				assert.Equal(t, err, s.RecvMsg(new(string)), "and stays ended")
			})
		})
	}
}

// TestStreamBufferFullWhileRetrying sends more messages than the buffer
// holds while the stream waits to be opened again: the send that finds no
// room aborts the stream with RESOURCE_EXHAUSTED, which RecvMsg returns
// too, and no other attempt is made.
func TestStreamBufferFullWhileRetrying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
			calls++
			return nil, status.Error(codes.Unavailable, "cannot open")
		}
		r := retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(time.Second)))
		ic := grpcresilience.StreamClientInterceptor(r, grpcresilience.WithIdempotent("/svc.S/*"), grpcresilience.WithStreamBuffer(2))
		s, err := ic(context.Background(), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, nil, "/svc.S/M", streamer)
		require.NoError(t, err)
		recvd := make(chan error)
		go func() { recvd <- s.RecvMsg(new(string)) }()
		synctest.Wait() // the first attempt failed; the retry waits
		require.Equal(t, 1, calls)
		require.NoError(t, s.SendMsg("a"))
		require.NoError(t, s.SendMsg("b"))
		err = s.SendMsg("c")
		assert.Equal(t, codes.ResourceExhausted, status.Code(err), "err: %v", err)
		assert.Contains(t, status.Convert(err).Message(), "more than 2 messages sent before the first response")
		err = <-recvd
		assert.Equal(t, codes.ResourceExhausted, status.Code(err), "err: %v", err)
		assert.Equal(t, 1, calls, "no attempt after the abort")
	})
}

// fakeStream is a client stream whose first response is what recv
// returns, under the ctx the stream was opened with.
type fakeStream struct {
	grpc.ClientStream
	ctx  context.Context
	recv func(ctx context.Context) error
	sent []any
}

func (f *fakeStream) Context() context.Context     { return f.ctx }
func (f *fakeStream) SendMsg(m any) error          { f.sent = append(f.sent, m); return nil }
func (f *fakeStream) CloseSend() error             { return nil }
func (f *fakeStream) RecvMsg(any) error            { return f.recv(f.ctx) }
func (f *fakeStream) Trailer() metadata.MD         { return nil }
func (f *fakeStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }

// TestStreamAttemptTimeoutVirtual opens streams under an attempt timeout
// in virtual time: the first attempt's stream, which never answers, is
// cancelled at the timeout with its cause and retried; the second answers
// at once and lives on after the policy returned, past the timeout, until
// the caller cancels it; nothing outlives the test.
func TestStreamAttemptTimeoutVirtual(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var streams []*fakeStream
		streamer := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
			f := &fakeStream{ctx: ctx}
			answered := len(streams) == 0 // the first has no answer to give: it waits for its ctx
			f.recv = func(ctx context.Context) error {
				if !answered {
					answered = true
					return nil
				}
				<-ctx.Done()
				return status.FromContextError(ctx.Err()).Err()
			}
			streams = append(streams, f)
			return f, nil
		}
		p := resilience.Chain(retry.New(retry.WithBackoff(retry.Constant(time.Second))), timeout.New(100*time.Millisecond))
		ic := grpcresilience.StreamClientInterceptor(p, grpcresilience.WithIdempotent("/svc.S/*"))
		ctx, cancel := context.WithCancel(context.Background())
		s, err := ic(ctx, &grpc.StreamDesc{ServerStreams: true}, nil, "/svc.S/M", streamer)
		require.NoError(t, err)
		require.NoError(t, s.SendMsg("request"))
		require.NoError(t, s.CloseSend())

		start := time.Now()
		require.NoError(t, s.RecvMsg(new(string)))
		assert.Equal(t, 100*time.Millisecond+time.Second, time.Since(start), "one timeout, one wait")
		require.Len(t, streams, 2)
		assert.ErrorIs(t, context.Cause(streams[0].ctx), timeout.ErrExceeded, "the first attempt was cancelled by the timeout")
		for i, f := range streams {
			assert.Equal(t, []any{"request"}, f.sent, "attempt %d got the request", i)
		}

		time.Sleep(time.Minute)
		assert.NoError(t, streams[1].ctx.Err(), "the stream outlives the attempt timeout")
		cancel()
		err = s.RecvMsg(new(string))
		assert.Equal(t, codes.Canceled, status.Code(err))
	})
}
