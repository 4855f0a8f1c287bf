package grpcresilience_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/bulkhead"
	"github.com/resilience-go/resilience/contrib/grpcresilience"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/retry"
)

func TestServerShedsUnderConcurrentLoad(t *testing.T) {
	checkLeaks(t)
	g := newGate()
	srv := &testServer{unary: func(ctx context.Context, _ int64, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if err := g.pass(ctx); err != nil {
			return nil, err
		}
		return &testpb.SimpleResponse{Username: "served"}, nil
	}}
	const limit, calls = 3, 20
	addr := serve(t, srv, grpc.ChainUnaryInterceptor(grpcresilience.UnaryServerInterceptor(bulkhead.New(limit))))
	client := dial(t, addr)

	codesSeen := make(chan codes.Code, calls)
	var wg sync.WaitGroup
	call := func() {
		defer wg.Done()
		var trailer metadata.MD
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{}, grpc.Trailer(&trailer))
		codesSeen <- status.Code(err)
		if status.Code(err) == codes.Unavailable {
			assert.Contains(t, status.Convert(err).Message(), "bulkhead: full")
			assert.Empty(t, trailer[grpcresilience.PushbackKey], "a full bulkhead gives no hint")
		}
	}
	wg.Add(limit)
	for range limit {
		go call()
	}
	for range limit {
		<-g.entered // the bulkhead is full
	}
	wg.Add(calls - limit)
	for range calls - limit {
		go call()
	}
	for range calls - limit {
		assert.Equal(t, codes.Unavailable, <-codesSeen, "shed while full")
	}
	g.release()
	wg.Wait()
	close(codesSeen)
	for c := range codesSeen {
		assert.Equal(t, codes.OK, c, "the calls admitted are served")
	}
	assert.Equal(t, int64(limit), srv.unaryCalls.Load())
}

// The adaptive concurrency limit sheds as the static bulkhead does: a call
// beyond its limit is answered UNAVAILABLE at once.
func TestServerShedsWithTheAdaptiveLimit(t *testing.T) {
	checkLeaks(t)
	g := newGate()
	srv := &testServer{unary: func(ctx context.Context, _ int64, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if err := g.pass(ctx); err != nil {
			return nil, err
		}
		return &testpb.SimpleResponse{Username: "served"}, nil
	}}
	const limit = 3
	adaptive := bulkhead.Adaptive(bulkhead.WithLimits(limit, limit, limit))
	addr := serve(t, srv, grpc.ChainUnaryInterceptor(grpcresilience.UnaryServerInterceptor(adaptive)))
	client := dial(t, addr)

	served := make(chan error, limit)
	for range limit {
		go func() {
			_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			served <- err
		}()
	}
	for range limit {
		<-g.entered // the limit is reached
	}
	_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err), "err: %v", err)
	assert.Contains(t, status.Convert(err).Message(), "bulkhead: full (adaptive limit)")
	g.release()
	for range limit {
		assert.NoError(t, <-served)
	}
	assert.Equal(t, int64(limit), srv.unaryCalls.Load())
}

func TestServerRateLimitPushback(t *testing.T) {
	limiter := ratelimit.New(rate.Every(time.Hour), 1)
	addr := serve(t, &testServer{}, grpc.ChainUnaryInterceptor(grpcresilience.UnaryServerInterceptor(limiter)))
	plain := dial(t, addr)
	_, err := plain.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	require.NoError(t, err)
	var trailer metadata.MD
	_, err = plain.UnaryCall(context.Background(), &testpb.SimpleRequest{}, grpc.Trailer(&trailer))
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "err: %v", err)
	assert.Contains(t, status.Convert(err).Message(), "ratelimit: limited")
	require.Len(t, trailer[grpcresilience.PushbackKey], 1)
	ms, perr := strconv.Atoi(trailer[grpcresilience.PushbackKey][0])
	require.NoError(t, perr)
	assert.Greater(t, ms, 3_500_000, "about an hour, in milliseconds")
	assert.LessOrEqual(t, ms, 3_600_000)
}

func TestServerPushbackHonouredByTheClient(t *testing.T) {
	srv := &testServer{}
	limiter := ratelimit.New(rate.Every(300*time.Millisecond), 1)
	addr := serve(t, srv, grpc.ChainUnaryInterceptor(grpcresilience.UnaryServerInterceptor(limiter)))
	var delays []time.Duration
	r := retry.New(retry.WithBackoff(retry.Constant(time.Hour)),
		retry.WithOnRetry(func(e retry.Event) { delays = append(delays, e.Delay) }))
	client := dial(t, addr, grpc.WithChainUnaryInterceptor(
		grpcresilience.UnaryClientInterceptor(r, grpcresilience.WithIdempotent(unaryMethod))))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	require.True(t, limiter.Allow(), "the token taken: the call is refused")
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	require.NoError(t, err)
	require.Len(t, delays, 1, "refused once, then admitted")
	assert.Positive(t, delays[0])
	assert.LessOrEqual(t, delays[0], 300*time.Millisecond, "the pushback, not the hour of the backoff")
	assert.Equal(t, int64(1), srv.unaryCalls.Load())
}

func TestServerHandlerErrorsReachThePolicy(t *testing.T) {
	tests := []struct {
		code    codes.Code
		failure bool
	}{
		{codes.Unavailable, true}, {codes.Internal, true}, {codes.ResourceExhausted, true},
		{codes.DeadlineExceeded, true}, {codes.Unknown, true},
		{codes.NotFound, false}, {codes.InvalidArgument, false}, {codes.OK, false},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			var seen error
			spy := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
				seen = op(ctx)
				if err := op(ctx); err != seen {
					t.Errorf("a second call of op returned %v, want %v", err, seen)
				}
				return seen
			})
			srv := &testServer{unary: func(context.Context, int64, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
				if tt.code == codes.OK {
					return &testpb.SimpleResponse{}, nil
				}
				return nil, status.Error(tt.code, "handler")
			}}
			client := dial(t, serve(t, srv, grpc.ChainUnaryInterceptor(grpcresilience.UnaryServerInterceptor(spy))))
			_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			assert.Equal(t, tt.code, status.Code(err))
			assert.Equal(t, int64(1), srv.unaryCalls.Load(), "the handler ran once")
			if tt.failure {
				assert.Equal(t, tt.code, status.Code(seen))
			} else {
				assert.NoError(t, seen)
			}
		})
	}
}

func TestServerStreamShedding(t *testing.T) {
	checkLeaks(t)
	g := newGate()
	srv := &testServer{output: func(_ int64, _ *testpb.StreamingOutputCallRequest, ss testpb.TestService_StreamingOutputCallServer) error {
		if err := g.pass(ss.Context()); err != nil {
			return err
		}
		return ss.Send(&testpb.StreamingOutputCallResponse{})
	}}
	refuse := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		if srvCalls := srv.outputCalls.Load(); srvCalls >= 1 {
			return limited{}
		}
		return op(ctx)
	})
	addr := serve(t, srv, grpc.ChainStreamInterceptor(grpcresilience.StreamServerInterceptor(refuse)))
	client := dial(t, addr)

	first, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	require.NoError(t, err)
	<-g.entered
	second, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = second.Recv()
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "err: %v", err)
	assert.Equal(t, []string{"2"}, second.Trailer()[grpcresilience.PushbackKey], "1.5ms, rounded up")
	g.release()
	_, err = first.Recv()
	assert.NoError(t, err)
}

func TestServerCancelledBeforeServed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	never := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error { return ctx.Err() })
	intercept := grpcresilience.UnaryServerInterceptor(never)
	_, err := intercept(ctx, nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
		t.Error("the handler ran")
		return nil, nil
	})
	assert.Equal(t, codes.Canceled, status.Code(err))
}

// limited is a rate limiter's refusal that asks for 1.5ms.
type limited struct{}

func (limited) Error() string { return "limited" }
func (limited) Is(target error) bool {
	return target == ratelimit.ErrLimited || target == resilience.ErrRejected
}
func (limited) RetryAfter() time.Duration { return 1500 * time.Microsecond }
