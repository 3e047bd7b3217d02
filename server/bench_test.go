package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func benchSecrets(b *testing.B, svc *Service, n int) []string {
	b.Helper()
	val := string(make([]byte, 256))
	ids := make([]string, n)
	for i := range ids {
		resp, err := svc.CreateSecret(context.Background(), &cofferv1.CreateSecretRequest{Name: fmt.Sprintf("bench/%04d", i), SecretString: &val})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = resp.GetArn()
	}
	return ids
}

// BenchmarkGetSecretValue measures the read path in process: bbolt lookup,
// unseal (AES-GCM unwrap + decrypt), access tracking.
func BenchmarkGetSecretValue(b *testing.B) {
	svc, _ := newTestService(b)
	ids := benchSecrets(b, svc, 100)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := svc.GetSecretValue(context.Background(), &cofferv1.GetSecretValueRequest{SecretId: ids[i%len(ids)]}); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkGetSecretValueGRPC is the same read over a real loopback gRPC
// connection, interceptor included.
func BenchmarkGetSecretValueGRPC(b *testing.B) {
	svc, _ := newTestService(b)
	ids := benchSecrets(b, svc, 100)
	gs, _ := NewGRPCServer(svc, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
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
	var mu sync.Mutex
	var latencies []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		i := 0
		for pb.Next() {
			start := time.Now()
			if _, err := client.GetSecretValue(context.Background(), &cofferv1.GetSecretValueRequest{SecretId: ids[i%len(ids)]}); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
			i++
		}
		mu.Lock()
		latencies = append(latencies, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	// The same p50/p99 metrics as awsjson's BenchmarkGetSecretValueAWS.
	if len(latencies) > 0 {
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[len(latencies)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Nanoseconds()), "p99-ns")
	}
}

// BenchmarkPutSecretValue measures the write path without Raft: validate,
// seal, marshal, apply in its own bbolt transaction (fsync per write).
func BenchmarkPutSecretValue(b *testing.B) {
	svc, _ := newTestService(b)
	ids := benchSecrets(b, svc, 100)
	val := string(make([]byte, 256))
	// A clock 15 minutes apart per write keeps each secret under the
	// 100-versions-per-24-hours limit however long the benchmark runs.
	clock := time.Now().UTC()
	svc.now = func() time.Time { clock = clock.Add(15 * time.Minute); return clock.Truncate(time.Millisecond) }
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := svc.PutSecretValue(context.Background(), &cofferv1.PutSecretValueRequest{SecretId: ids[i%len(ids)], SecretString: &val}); err != nil {
			b.Fatal(err)
		}
	}
}
