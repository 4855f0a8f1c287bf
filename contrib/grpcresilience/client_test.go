package grpcresilience_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/contrib/grpcresilience"
	"github.com/resilience-go/resilience/retry"
)

const unaryMethod = "/grpc.testing.TestService/UnaryCall"

// failing returns a unary behaviour that fails the first n calls with code
// and the given pushback trailer ("" for none), and answers the others.
func failing(n int64, code codes.Code, pushback string) func(context.Context, int64, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return func(ctx context.Context, call int64, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if call > n {
			return &testpb.SimpleResponse{Username: fmt.Sprint("call ", call)}, nil
		}
		if pushback != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs(grpcresilience.PushbackKey, pushback))
		}
		return nil, status.Error(code, fmt.Sprint("failure ", call))
	}
}

// retryClient returns a client of addr whose calls run under a retry of 4
// attempts that would wait an hour between them unless a pushback says
// otherwise, and the waits it made.
func retryClient(t *testing.T, addr string, opts ...grpcresilience.ClientOption) (testpb.TestServiceClient, *[]time.Duration) {
	var delays []time.Duration
	r := retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(retry.Constant(time.Hour)),
		retry.WithOnRetry(func(e retry.Event) { delays = append(delays, e.Delay) }))
	return dial(t, addr, grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(r, opts...))), &delays
}

func TestUnaryRetriesWithPushback(t *testing.T) {
	checkLeaks(t)
	srv := &testServer{unary: failing(2, codes.Unavailable, "20")}
	client, delays := retryClient(t, serve(t, srv), grpcresilience.WithIdempotent(unaryMethod))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	require.NoError(t, err)
	assert.Equal(t, "call 3", resp.GetUsername())
	assert.Equal(t, int64(3), srv.unaryCalls.Load())
	require.Len(t, *delays, 2, "two retries")
	for _, d := range *delays { // the pushback, not the hour of the backoff
		assert.LessOrEqual(t, d, 20*time.Millisecond)
		assert.Positive(t, d)
	}
}

func TestUnaryResourceExhausted(t *testing.T) {
	tests := []struct {
		name     string
		pushback string
		opts     []grpcresilience.ClientOption
		calls    int64
		code     codes.Code
	}{
		{"without pushback is an answer", "", nil, 1, codes.ResourceExhausted},
		{"with pushback is retried", "1", nil, 3, codes.OK},
		{"configured is retried", "", []grpcresilience.ClientOption{grpcresilience.WithFailureCodes(codes.ResourceExhausted)}, 3, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &testServer{unary: failing(2, codes.ResourceExhausted, tt.pushback)}
			opts := append([]grpcresilience.ClientOption{grpcresilience.WithIdempotent(unaryMethod)}, tt.opts...)
			var client testpb.TestServiceClient
			if len(tt.opts) == 0 {
				client, _ = retryClient(t, serve(t, srv), opts...)
			} else { // no pushback: wait as the backoff says
				r := retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(retry.Constant(time.Millisecond)))
				client = dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(r, opts...)))
			}
			_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			assert.Equal(t, tt.code, status.Code(err), "err: %v", err)
			assert.Equal(t, tt.calls, srv.unaryCalls.Load())
		})
	}
}

func TestUnaryPushbackStopsRetries(t *testing.T) {
	for _, pushback := range []string{"-1", "soon", "1.5"} {
		t.Run(pushback, func(t *testing.T) {
			srv := &testServer{unary: failing(2, codes.Unavailable, pushback)}
			b := circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(1))
			r := retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(retry.Constant(time.Millisecond)))
			client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(
				grpcresilience.UnaryClientInterceptor(resilience.Chain(r, b), grpcresilience.WithIdempotent(unaryMethod))))

			_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			assert.Equal(t, codes.Unavailable, status.Code(err), "err: %v", err)
			assert.Equal(t, "failure 1", status.Convert(err).Message(), "the server's status, unchanged")
			assert.Equal(t, int64(1), srv.unaryCalls.Load(), "pushback %q: not retried", pushback)
			assert.Equal(t, circuitbreaker.Open, b.State(), "the failure still counts")
		})
	}
}

func TestUnaryAnswersAreNotRetried(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition, codes.Unimplemented,
		codes.Internal, codes.Unknown, codes.Aborted} {
		t.Run(code.String(), func(t *testing.T) {
			srv := &testServer{unary: failing(5, code, "1")}
			b := circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(1))
			r := retry.New(retry.WithMaxAttempts(4))
			client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(
				grpcresilience.UnaryClientInterceptor(resilience.Chain(r, b), grpcresilience.WithIdempotent("/grpc.testing.TestService/*"))))

			_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			assert.Equal(t, code, status.Code(err))
			assert.Equal(t, "failure 1", status.Convert(err).Message())
			assert.Equal(t, int64(1), srv.unaryCalls.Load())
			assert.Equal(t, circuitbreaker.Closed, b.State(), "an answer is a success for the breaker")
		})
	}
}

func TestUnaryNonIdempotentIsCalledOnce(t *testing.T) {
	srv := &testServer{unary: failing(2, codes.Unavailable, "")}
	r := retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(retry.Constant(time.Millisecond)))
	calls := 0
	counted := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		calls++
		return op(ctx)
	})
	client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(
		grpcresilience.UnaryClientInterceptor(resilience.Chain(r, counted), grpcresilience.WithIdempotent("/grpc.testing.TestService/EmptyCall"))))

	_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err), "err: %v", err)
	assert.Equal(t, "failure 1", status.Convert(err).Message())
	assert.Equal(t, int64(1), srv.unaryCalls.Load(), "one call reaches the server")
	assert.Equal(t, 1, calls, "the retry gave up at once")

	// The same method, marked on the call, is retried.
	resp, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{}, grpcresilience.Idempotent())
	require.NoError(t, err)
	assert.Equal(t, "call 3", resp.GetUsername())
	assert.Equal(t, int64(3), srv.unaryCalls.Load())
}

func TestUnaryNonIdempotentOneAttemptWhateverThePolicy(t *testing.T) {
	srv := &testServer{unary: failing(5, codes.Unavailable, "")}
	again := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		for range 3 {
			if err := op(ctx); err == nil {
				return nil
			}
		}
		return op(ctx)
	})
	client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(again)))
	_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, int64(1), srv.unaryCalls.Load(), "a policy that calls op again gets the first error back")
}

func TestUnaryAttemptDeadlineIsAFailure(t *testing.T) {
	slow := func(ctx context.Context, n int64, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if n == 1 {
			<-ctx.Done() // the client's attempt deadline
			return nil, ctx.Err()
		}
		return &testpb.SimpleResponse{Username: "second"}, nil
	}
	srv := &testServer{unary: slow}
	attempt := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		return op(ctx)
	})
	r := retry.New(retry.WithBackoff(retry.Constant(time.Millisecond)))
	client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(
		grpcresilience.UnaryClientInterceptor(resilience.Chain(r, attempt), grpcresilience.WithIdempotent(unaryMethod))))
	resp, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	require.NoError(t, err)
	assert.Equal(t, "second", resp.GetUsername())
	assert.Equal(t, int64(2), srv.unaryCalls.Load())
}

func TestUnaryCallerDeadlineIsNotRetried(t *testing.T) {
	g := newGate()
	defer g.release()
	srv := &testServer{unary: func(ctx context.Context, _ int64, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, g.pass(ctx)
	}}
	var seen []error
	spy := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		err := op(ctx)
		seen = append(seen, err)
		return err
	})
	b := circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(1))
	r := retry.New(retry.WithBackoff(retry.Constant(time.Millisecond)))
	client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(
		grpcresilience.UnaryClientInterceptor(resilience.Chain(r, b, spy), grpcresilience.WithIdempotent(unaryMethod))))

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-g.entered
		cancel()
	}()
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	assert.Equal(t, codes.Canceled, status.Code(err), "err: %v", err)
	assert.Equal(t, int64(1), srv.unaryCalls.Load(), "not retried")
	require.Len(t, seen, 1)
	assert.ErrorIs(t, seen[0], context.Canceled, "the policies see the caller's cancellation")
	assert.Equal(t, circuitbreaker.Closed, b.State(), "which the breaker ignores")
}

func TestUnaryRefusal(t *testing.T) {
	srv := &testServer{unary: failing(100, codes.Unavailable, "")}
	b := circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(2), circuitbreaker.WithBreakDuration(time.Hour, time.Hour))
	r := retry.New(retry.WithMaxAttempts(5), retry.WithBackoff(retry.Constant(time.Millisecond)))
	client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(
		grpcresilience.UnaryClientInterceptor(resilience.Chain(r, b), grpcresilience.WithIdempotent(unaryMethod))))

	// The breaker's hint of an hour passes the deadline: the retry gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err), "err: %v", err)
	assert.ErrorIs(t, err, circuitbreaker.ErrOpen, "the breaker opened after two failures")
	assert.ErrorIs(t, err, resilience.ErrRejected)
	var se *grpcresilience.StatusError
	require.ErrorAs(t, err, &se, "the failure before the refusal")
	assert.Equal(t, codes.Unavailable, se.Code)
	assert.Equal(t, int64(2), srv.unaryCalls.Load())

	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.ErrorIs(t, err, circuitbreaker.ErrOpen)
	assert.Equal(t, int64(2), srv.unaryCalls.Load(), "refused without a call")
	assert.Contains(t, err.Error(), "circuitbreaker: open")
}

func TestUnaryWarnsWhenGRPCRetriesToo(t *testing.T) {
	srv := &testServer{unary: failing(1, codes.Unavailable, "")}
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	const config = `{"methodConfig": [{"name": [{"service": "grpc.testing.TestService"}],
		"retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.001s", "maxBackoff": "0.001s",
		"backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}`
	r := retry.New(retry.WithMaxAttempts(3), retry.WithBackoff(retry.Constant(time.Millisecond)))
	client := dial(t, serve(t, srv), grpc.WithDefaultServiceConfig(config),
		grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(r,
			grpcresilience.WithIdempotent(unaryMethod), grpcresilience.WithLogger(logger))))
	for range 2 {
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		require.NoError(t, err)
	}
	out := log.String()
	assert.Contains(t, out, "level=WARN")
	assert.Contains(t, out, "the service config has a retryPolicy for the method")
	assert.Contains(t, out, "grpc.method="+unaryMethod)
	assert.Equal(t, 1, bytes.Count(log.Bytes(), []byte("\n")), "logged once: %s", out)
}

func TestUnaryNoWarningWithoutRetryPolicy(t *testing.T) {
	srv := &testServer{unary: failing(1, codes.Unavailable, "")}
	var log bytes.Buffer
	r := retry.New(retry.WithBackoff(retry.Constant(time.Millisecond)))
	client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(r,
		grpcresilience.WithIdempotent(unaryMethod), grpcresilience.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))))
	_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	require.NoError(t, err)
	assert.Equal(t, int64(2), srv.unaryCalls.Load())
	assert.Empty(t, log.String())
}

func TestBreakerPerTargetOpensAndCloses(t *testing.T) {
	checkLeaks(t)
	var down = true
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	isDown := func() bool { <-mu; d := down; mu <- struct{}{}; return d }
	flaky := &testServer{unary: func(context.Context, int64, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		if isDown() {
			return nil, status.Error(codes.Unavailable, "down")
		}
		return &testpb.SimpleResponse{Username: "flaky"}, nil
	}}
	healthy := &testServer{}
	breakers := map[string]*circuitbreaker.Breaker{}
	perTarget := grpcresilience.PerTarget(func(target string) resilience.Policy {
		b := circuitbreaker.New(circuitbreaker.WithName(target), circuitbreaker.WithConsecutiveFailures(3),
			circuitbreaker.WithBreakDuration(20*time.Millisecond, 20*time.Millisecond), circuitbreaker.WithHalfOpenProbes(1))
		breakers[target] = b // calls here are sequential
		return b
	})
	ic := grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(perTarget))
	flakyAddr, healthyAddr := serve(t, flaky), serve(t, healthy)
	toFlaky, toHealthy := dial(t, flakyAddr, ic), dial(t, healthyAddr, ic)
	ctx := context.Background()

	for i := range 3 {
		_, err := toFlaky.UnaryCall(ctx, &testpb.SimpleRequest{})
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.NotErrorIs(t, err, resilience.ErrRejected, "call %d reaches the server", i)
	}
	require.Contains(t, breakers, flakyAddr)
	assert.Equal(t, circuitbreaker.Open, breakers[flakyAddr].State())
	_, err := toFlaky.UnaryCall(ctx, &testpb.SimpleRequest{})
	assert.ErrorIs(t, err, circuitbreaker.ErrOpen)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, int64(3), flaky.unaryCalls.Load(), "the open breaker refused the fourth")

	resp, err := toHealthy.UnaryCall(ctx, &testpb.SimpleRequest{})
	require.NoError(t, err, "the other target has a breaker of its own")
	assert.Equal(t, "ok", resp.GetUsername())
	assert.Equal(t, circuitbreaker.Closed, breakers[healthyAddr].State())

	<-mu
	down = false
	mu <- struct{}{}
	eventually(t, "the breaker lets a probe through and closes", func() bool {
		_, err := toFlaky.UnaryCall(ctx, &testpb.SimpleRequest{})
		return err == nil
	})
	assert.Equal(t, circuitbreaker.Closed, breakers[flakyAddr].State())
	assert.Equal(t, int64(4), flaky.unaryCalls.Load(), "one probe, which succeeded")
}

func TestPerMethod(t *testing.T) {
	var methods []string
	perMethod := grpcresilience.PerMethod(func(method string) resilience.Policy {
		methods = append(methods, method)
		return resilience.Chain()
	})
	client := dial(t, serve(t, &testServer{}), grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(perMethod)))
	for range 2 {
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		require.NoError(t, err)
		_, err = client.EmptyCall(context.Background(), &testpb.Empty{})
		require.NoError(t, err)
	}
	assert.Equal(t, []string{unaryMethod, "/grpc.testing.TestService/EmptyCall"}, methods)
	err := perMethod.Do(context.Background(), func(context.Context) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, "", methods[len(methods)-1], "a call from no interceptor has method \"\"")
}

func TestUnaryTimeoutOfThePolicy(t *testing.T) {
	g := newGate()
	defer g.release()
	srv := &testServer{unary: func(ctx context.Context, _ int64, _ *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
		return nil, g.pass(ctx)
	}}
	total := resilience.PolicyFunc(func(ctx context.Context, op resilience.Op) error {
		ctx, cancel := context.WithTimeoutCause(ctx, 20*time.Millisecond, errors.New("total timeout"))
		defer cancel()
		if err := op(ctx); err != nil {
			return fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return nil
	})
	client := dial(t, serve(t, srv), grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(total)))
	_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "err: %v", err)
}
