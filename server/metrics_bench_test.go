package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cofferhq/coffer/metrics"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// BenchmarkGetSecretValueMetrics is BenchmarkGetSecretValueGRPC with the
// request metrics off and on: the difference is what instrumentation costs
// the hot path (docs/OPERATIONS.md quotes it).
func BenchmarkGetSecretValueMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			svc, _ := newTestService(b)
			ids := benchSecrets(b, svc, 100)
			gate := &Gate{}
			if on {
				gate.Metrics = metrics.New()
			}
			gs, _ := NewGRPCServer(Services{Secrets: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, gate)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = gs.Serve(lis) }()
			b.Cleanup(gs.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = conn.Close() })
			client := cofferv1.NewSecretsManagerServiceClient(conn)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := client.GetSecretValue(context.Background(), &cofferv1.GetSecretValueRequest{SecretId: ids[i%len(ids)]}); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
