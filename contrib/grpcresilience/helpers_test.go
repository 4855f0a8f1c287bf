package grpcresilience_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// testServer is a TestService whose methods do what the test says, on a
// real gRPC server listening on a loopback TCP port.
type testServer struct {
	testpb.UnimplementedTestServiceServer

	unary  func(ctx context.Context, n int64, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error)
	output func(n int64, req *testpb.StreamingOutputCallRequest, ss testpb.TestService_StreamingOutputCallServer) error
	duplex func(n int64, ss testpb.TestService_FullDuplexCallServer) error

	unaryCalls  atomic.Int64
	outputCalls atomic.Int64
	duplexCalls atomic.Int64
}

func (s *testServer) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *testServer) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	n := s.unaryCalls.Add(1)
	if s.unary == nil {
		return &testpb.SimpleResponse{Username: "ok"}, nil
	}
	return s.unary(ctx, n, req)
}

func (s *testServer) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, ss testpb.TestService_StreamingOutputCallServer) error {
	return s.output(s.outputCalls.Add(1), req, ss)
}

func (s *testServer) FullDuplexCall(ss testpb.TestService_FullDuplexCallServer) error {
	return s.duplex(s.duplexCalls.Add(1), ss)
}

// serve starts s on a loopback TCP port with opts, and returns its
// address. The server stops when the test ends.
func serve(t testing.TB, s *testServer, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(opts...)
	testpb.RegisterTestServiceServer(srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// dial returns a client of the TestService at addr, closed when the test
// ends. Unless opts say otherwise, grpc-go's own retries are off.
func dial(t testing.TB, addr string, opts ...grpc.DialOption) testpb.TestServiceClient {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry()}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// checkLeaks fails the test if, once the test's cleanups have run, more
// goroutines run than before it started. grpc-go ends its goroutines
// shortly after a connection or server closes, so the count is read until
// it settles.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() {
		var n int
		for range 500 {
			if n = runtime.NumGoroutine(); n <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines left running, %d before the test:\n%s", n, before, trimStacks(string(buf)))
	})
}

// trimStacks keeps the stacks that mention grpc or this package.
func trimStacks(s string) string {
	var keep []string
	for _, g := range strings.Split(s, "\n\n") {
		if strings.Contains(g, "grpc") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

// eventually calls f until it reports true, waiting a little between
// calls, and fails the test if it never does within about ten seconds.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for range 1000 {
		if f() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never: %s", what)
}

// gate holds the handlers that enter it until it is opened.
type gate struct {
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 100), open: make(chan struct{})} }

func (g *gate) pass(ctx context.Context) error {
	g.entered <- struct{}{}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }
