package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func startGRPC(t *testing.T) (*grpc.ClientConn, func(bool)) {
	t.Helper()
	svc, _ := newTestService(t)
	gs, hs := NewGRPCServer(Services{Secrets: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, func(serving bool) { SetServing(hs, serving) }
}

// TestReflectionListsServices does what `grpcurl list` does.
func TestReflectionListsServices(t *testing.T) {
	conn, _ := startGRPC(t)
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"coffer.v1.SecretsManagerService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

func TestHealthAndRequestID(t *testing.T) {
	conn, setServing := startGRPC(t)
	health := healthpb.NewHealthClient(conn)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "coffer.v1.SecretsManagerService"})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	if got := check(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before ready: %s", got)
	}
	setServing(true)
	if got := check(); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after ready: %s", got)
	}
	var header metadata.MD
	_, err := cofferv1.NewSecretsManagerServiceClient(conn).DescribeSecret(context.Background(),
		&cofferv1.DescribeSecretRequest{SecretId: "missing"}, grpc.Header(&header))
	if TypeOf(err) != TypeResourceNotFound {
		t.Fatalf("describe missing: %v", err)
	}
	if ids := header.Get(RequestIDHeader); len(ids) != 1 || len(ids[0]) != 36 {
		t.Fatalf("request id header %v", ids)
	}
}
