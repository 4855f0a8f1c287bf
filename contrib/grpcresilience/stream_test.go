package grpcresilience_test

import (
	"context"
	"fmt"
	"io"
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
	"github.com/resilience-go/resilience/timeout"
)

const allMethods = "/grpc.testing.TestService/*"

func streamClient(t *testing.T, addr string, p resilience.Policy, opts ...grpcresilience.ClientOption) testpb.TestServiceClient {
	return dial(t, addr, grpc.WithChainStreamInterceptor(grpcresilience.StreamClientInterceptor(p, opts...)))
}

func quickRetry() *retry.Retrier {
	return retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(retry.Constant(time.Millisecond)))
}

func TestStreamEstablishmentRetried(t *testing.T) {
	checkLeaks(t)
	srv := &testServer{output: func(n int64, req *testpb.StreamingOutputCallRequest, ss testpb.TestService_StreamingOutputCallServer) error {
		if n <= 2 {
			return status.Error(codes.Unavailable, fmt.Sprint("failure ", n))
		}
		for i := range req.GetResponseParameters() { // the request, sent again
			if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte{byte(i)}}}); err != nil {
				return err
			}
		}
		return nil
	}}
	client := streamClient(t, serve(t, srv), quickRetry(), grpcresilience.WithIdempotent(allMethods))
	req := &testpb.StreamingOutputCallRequest{ResponseParameters: make([]*testpb.ResponseParameters, 3)}
	stream, err := client.StreamingOutputCall(context.Background(), req)
	require.NoError(t, err)
	for i := range 3 {
		resp, err := stream.Recv()
		require.NoError(t, err, "message %d", i)
		assert.Equal(t, []byte{byte(i)}, resp.GetPayload().GetBody())
	}
	_, err = stream.Recv()
	assert.Equal(t, io.EOF, err)
	assert.Equal(t, int64(3), srv.outputCalls.Load())
}

func TestStreamBidiReplaysMessages(t *testing.T) {
	checkLeaks(t)
	var got [][]string
	srv := &testServer{duplex: func(n int64, ss testpb.TestService_FullDuplexCallServer) error {
		var bodies []string
		defer func() { got = append(got, bodies) }() // attempts are sequential
		for {
			req, err := ss.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			bodies = append(bodies, string(req.GetPayload().GetBody()))
			if n == 1 && len(bodies) == 2 {
				ss.SetTrailer(metadata.Pairs(grpcresilience.PushbackKey, "1"))
				return status.Error(codes.Unavailable, "first attempt")
			}
			if len(bodies) >= 2 {
				if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte(fmt.Sprint(len(bodies)))}}); err != nil {
					return err
				}
			}
		}
	}}
	client := streamClient(t, serve(t, srv), quickRetry(), grpcresilience.WithIdempotent(allMethods))
	stream, err := client.FullDuplexCall(context.Background())
	require.NoError(t, err)
	send := func(body string) {
		require.NoError(t, stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(body)}}))
	}
	send("a")
	send("b")
	resp, err := stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, "2", string(resp.GetPayload().GetBody()))
	send("c")
	resp, err = stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, "3", string(resp.GetPayload().GetBody()))
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	assert.Equal(t, io.EOF, err)
	assert.Equal(t, [][]string{{"a", "b"}, {"a", "b", "c"}}, got)
}

func TestStreamNonIdempotentOneAttempt(t *testing.T) {
	srv := &testServer{output: func(int64, *testpb.StreamingOutputCallRequest, testpb.TestService_StreamingOutputCallServer) error {
		return status.Error(codes.Unavailable, "down")
	}}
	client := streamClient(t, serve(t, srv), quickRetry())
	stream, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, "down", status.Convert(err).Message())
	assert.Equal(t, int64(1), srv.outputCalls.Load())

	stream, err = client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{}, grpcresilience.Idempotent())
	require.NoError(t, err)
	_, err = stream.Recv()
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, int64(5), srv.outputCalls.Load(), "marked on the call: 4 attempts")
}

func TestStreamAnswerIsNotRetried(t *testing.T) {
	srv := &testServer{output: func(int64, *testpb.StreamingOutputCallRequest, testpb.TestService_StreamingOutputCallServer) error {
		return status.Error(codes.NotFound, "no such thing")
	}}
	client := streamClient(t, serve(t, srv), quickRetry(), grpcresilience.WithIdempotent(allMethods))
	stream, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = stream.Recv()
	assert.Equal(t, codes.NotFound, status.Code(err), "and again")
	assert.Equal(t, int64(1), srv.outputCalls.Load())
}

func TestStreamRefusedByBreaker(t *testing.T) {
	srv := &testServer{output: func(int64, *testpb.StreamingOutputCallRequest, testpb.TestService_StreamingOutputCallServer) error {
		return status.Error(codes.Unavailable, "down")
	}}
	b := circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(1), circuitbreaker.WithBreakDuration(time.Hour, time.Hour))
	client := streamClient(t, serve(t, srv), b)
	for i := range 2 {
		stream, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
		require.NoError(t, err)
		_, err = stream.Recv()
		assert.Equal(t, codes.Unavailable, status.Code(err))
		if i == 1 {
			assert.ErrorIs(t, err, circuitbreaker.ErrOpen)
			assert.Equal(t, io.EOF, stream.SendMsg(&testpb.StreamingOutputCallRequest{}))
		}
	}
	assert.Equal(t, int64(1), srv.outputCalls.Load())
}

func TestStreamAttemptTimeoutEndsOnlyTheStart(t *testing.T) {
	checkLeaks(t)
	srv := &testServer{output: func(n int64, _ *testpb.StreamingOutputCallRequest, ss testpb.TestService_StreamingOutputCallServer) error {
		if n == 1 {
			<-ss.Context().Done() // the attempt timeout
			return ss.Context().Err()
		}
		if err := ss.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
			return err
		}
		<-ss.Context().Done() // until the client goes
		return nil
	}}
	client := streamClient(t, serve(t, srv), resilience.Chain(quickRetry(), timeout.New(50*time.Millisecond)),
		grpcresilience.WithIdempotent(allMethods))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, int64(2), srv.outputCalls.Load(), "the first attempt timed out")
	_, hasDeadline := stream.Context().Deadline()
	assert.False(t, hasDeadline, "the stream does not run under the attempt's timeout")
	assert.NoError(t, stream.Context().Err(), "the timeout's ctx ended when its Do returned; the stream's did not")
	cancel()
	_, err = stream.Recv()
	assert.Equal(t, codes.Canceled, status.Code(err))
}

func TestStreamBufferFullOpensTheStream(t *testing.T) {
	received := make(chan string, 10)
	srv := &testServer{duplex: func(_ int64, ss testpb.TestService_FullDuplexCallServer) error {
		for {
			req, err := ss.Recv()
			if err != nil {
				return nil
			}
			received <- string(req.GetPayload().GetBody())
		}
	}}
	client := streamClient(t, serve(t, srv), quickRetry(), grpcresilience.WithIdempotent(allMethods), grpcresilience.WithStreamBuffer(2))
	stream, err := client.FullDuplexCall(context.Background())
	require.NoError(t, err)
	for _, body := range []string{"a", "b", "c"} {
		require.NoError(t, stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(body)}}))
	}
	// Nothing was asked of the server: the third message opened the stream.
	for _, want := range []string{"a", "b", "c"} {
		assert.Equal(t, want, <-received)
	}
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	assert.Equal(t, io.EOF, err)
	assert.Equal(t, int64(1), srv.duplexCalls.Load())
}

func TestStreamHeaderStartsThePolicy(t *testing.T) {
	srv := &testServer{output: func(n int64, _ *testpb.StreamingOutputCallRequest, ss testpb.TestService_StreamingOutputCallServer) error {
		if n == 1 {
			return status.Error(codes.Unavailable, "down")
		}
		if err := ss.SendHeader(metadata.Pairs("attempt", fmt.Sprint(n))); err != nil {
			return err
		}
		return ss.Send(&testpb.StreamingOutputCallResponse{})
	}}
	client := streamClient(t, serve(t, srv), quickRetry(), grpcresilience.WithIdempotent(allMethods))
	stream, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	require.NoError(t, err)
	md, err := stream.Header()
	require.NoError(t, err)
	assert.Equal(t, []string{"2"}, md.Get("attempt"))
	_, err = stream.Recv()
	assert.NoError(t, err)
	_, err = stream.Recv()
	assert.Equal(t, io.EOF, err)
}

// TestStreamConcurrentSendAndRecv sends from one goroutine while another
// receives, across a retry: every message reaches the attempt that
// answers, in order.
func TestStreamConcurrentSendAndRecv(t *testing.T) {
	checkLeaks(t)
	srv := &testServer{duplex: func(n int64, ss testpb.TestService_FullDuplexCallServer) error {
		for {
			req, err := ss.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if n == 1 {
				return status.Error(codes.Unavailable, "first attempt")
			}
			if err := ss.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
				return err
			}
		}
	}}
	client := streamClient(t, serve(t, srv), quickRetry(), grpcresilience.WithIdempotent(allMethods))
	stream, err := client.FullDuplexCall(context.Background())
	require.NoError(t, err)
	const messages = 20
	sent := make(chan error, 1)
	go func() {
		for i := range messages {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(fmt.Sprint(i))}}); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	var got []string
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		got = append(got, string(resp.GetPayload().GetBody()))
	}
	require.NoError(t, <-sent)
	want := make([]string, messages)
	for i := range want {
		want[i] = fmt.Sprint(i)
	}
	assert.Equal(t, want, got)
	assert.Equal(t, int64(2), srv.duplexCalls.Load())
}
