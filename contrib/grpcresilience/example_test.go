package grpcresilience_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/circuitbreaker"
	"github.com/resilience-go/resilience/contrib/grpcresilience"
	"github.com/resilience-go/resilience/ratelimit"
	"github.com/resilience-go/resilience/retry"
)

// health is a health service that is unavailable for its first calls,
// asking its clients to come back in 10ms.
type health struct {
	healthpb.UnimplementedHealthServer
	down  int64
	calls atomic.Int64
}

func (h *health) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if h.calls.Add(1) <= h.down {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(grpcresilience.PushbackKey, "10"))
		return nil, status.Error(codes.Unavailable, "starting")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *health) Watch(_ *healthpb.HealthCheckRequest, ss healthpb.Health_WatchServer) error {
	if h.calls.Add(1) <= h.down {
		return status.Error(codes.Unavailable, "starting")
	}
	return ss.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// startHealth serves h on a loopback port and returns its address and a
// func that stops it.
func startHealth(h *health, opts ...grpc.ServerOption) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, h)
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), srv.Stop
}

func Example() {
	h := &health{down: 2}
	addr, stop := startHealth(h)
	defer stop()

	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(), // the interceptor retries
		grpc.WithChainUnaryInterceptor(grpcresilience.UnaryClientInterceptor(
			resilience.Chain(
				retry.New(retry.WithMaxAttempts(3)),
				circuitbreaker.New(),
			),
			grpcresilience.WithIdempotent("/grpc.health.v1.Health/Check"),
		)),
	)
	if err != nil {
		panic(err)
	}
	defer cc.Close()

	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println(resp.GetStatus(), err)
	fmt.Println("calls:", h.calls.Load())
	// Output:
	// SERVING <nil>
	// calls: 3
}

func ExampleStreamClientInterceptor() {
	h := &health{down: 1}
	addr, stop := startHealth(h)
	defer stop()

	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithChainStreamInterceptor(grpcresilience.StreamClientInterceptor(
			retry.New(retry.WithBackoff(retry.Constant(time.Millisecond))),
			grpcresilience.WithIdempotent("/grpc.health.v1.Health/Watch"),
		)),
	)
	if err != nil {
		panic(err)
	}
	defer cc.Close()

	// The first attempt's stream ends UNAVAILABLE before its first
	// response; the second is opened with the request sent again.
	stream, err := healthpb.NewHealthClient(cc).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		panic(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Println(resp.GetStatus())
	}
	fmt.Println("streams opened:", h.calls.Load())
	// Output:
	// SERVING
	// EOF
	// streams opened: 2
}

func ExamplePerTarget() {
	down := &health{down: 1000}
	downAddr, stopDown := startHealth(down)
	defer stopDown()
	up := &health{}
	upAddr, stopUp := startHealth(up)
	defer stopUp()

	// One interceptor for both connections, with a breaker per target.
	ic := grpcresilience.UnaryClientInterceptor(grpcresilience.PerTarget(func(target string) resilience.Policy {
		return circuitbreaker.New(circuitbreaker.WithConsecutiveFailures(3))
	}))
	connect := func(addr string) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(ic))
		if err != nil {
			panic(err)
		}
		return cc
	}
	downConn, upConn := connect(downAddr), connect(upAddr)
	defer downConn.Close()
	defer upConn.Close()
	toDown, toUp := healthpb.NewHealthClient(downConn), healthpb.NewHealthClient(upConn)

	ctx := context.Background()
	for range 5 {
		_, err := toDown.Check(ctx, &healthpb.HealthCheckRequest{})
		fmt.Println(status.Code(err), errors.Is(err, circuitbreaker.ErrOpen))
	}
	resp, err := toUp.Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println(resp.GetStatus(), err)
	fmt.Println("calls that reached the failing server:", down.calls.Load())
	// Output:
	// Unavailable false
	// Unavailable false
	// Unavailable false
	// Unavailable true
	// Unavailable true
	// SERVING <nil>
	// calls that reached the failing server: 3
}

func ExampleUnaryServerInterceptor() {
	// One call an hour per server, to show a refusal.
	limiter := ratelimit.New(rate.Every(time.Hour), 1)
	addr, stop := startHealth(&health{},
		grpc.ChainUnaryInterceptor(grpcresilience.UnaryServerInterceptor(limiter)))
	defer stop()

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)

	for range 2 {
		var trailer metadata.MD
		_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
		fmt.Println(status.Code(err), "pushback:", len(trailer[grpcresilience.PushbackKey]) == 1)
	}
	// Output:
	// OK pushback: false
	// ResourceExhausted pushback: true
}
