package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/audit"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
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
	gs, _ := NewGRPCServer(Services{Secrets: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
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

// auditLog adapts an audit.Log to Auditor for benchmarks.
type auditLog struct{ l *audit.Log }

func (a auditLog) Write(r AuditRecord) error { return a.l.Write(audit.Record(r)) }
func (a auditLog) HashValue(v string) string { return a.l.HashValue(v) }
func (a auditLog) Healthy() error            { return a.l.Healthy() }

// BenchmarkGetSecretValueAuthz is BenchmarkGetSecretValueGRPC for a
// principal with an attached policy (three statements, one with a
// condition), authenticated by bearer key (authn-signed: by a SigV4
// signature, as the CLI sends), at each level of access
// control: authentication only (what every request paid before policies),
// authorization added, and the audit record added (with and without an
// fsync per request). The ops/s difference is the cost the note quotes.
// The x16 variants run 16 callers per core: the audit log's group commit
// shares one fsync among concurrent requests.
func BenchmarkGetSecretValueAuthz(b *testing.B) {
	for _, name := range []string{"authn", "authn-signed", "authz", "authz+audit", "authz+audit-sync", "authn-x16", "authz+audit-sync-x16"} {
		level, x16 := strings.CutSuffix(name, "-x16")
		level, signed := strings.CutSuffix(level, "-signed")
		b.Run(name, func(b *testing.B) {
			svc, store := newTestService(b)
			ids := benchSecrets(b, svc, 100)
			ctx := context.Background()
			iam := NewIAM(svc, store)
			if _, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "app", Tags: map[string]string{"team": "bench"}}); err != nil {
				b.Fatal(err)
			}
			key, err := iam.CreateAccessKey(ctx, &cofferv1.CreateAccessKeyRequest{Principal: "app"})
			if err != nil {
				b.Fatal(err)
			}
			doc := `{"Version":"2012-10-17","Statement":[
				{"Sid":"NoProd","Effect":"Deny","Action":"secretsmanager:*","Resource":"arn:aws:secretsmanager:*:*:secret:prod/*"},
				{"Sid":"Describe","Effect":"Allow","Action":"secretsmanager:Describe*","Resource":"*"},
				{"Sid":"Read","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:aws:secretsmanager:*:*:secret:bench/*",
				 "Condition":{"StringEquals":{"aws:PrincipalTag/team":"bench"}}}]}`
			if _, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "read", Document: doc}); err != nil {
				b.Fatal(err)
			}
			if _, err := iam.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: "app", Policy: "read"}); err != nil {
				b.Fatal(err)
			}
			var gate *Gate
			if level != "authn" {
				gate = &Gate{Authz: iam.Authorizer(), Node: "bench"}
			}
			if strings.HasPrefix(level, "authz+audit") {
				l, err := audit.Open(audit.Config{Path: filepath.Join(b.TempDir(), "audit.log"), Key: make([]byte, 32), Node: "bench",
					Sync: level == "authz+audit-sync"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = l.Close() })
				gate.Audit = auditLog{l}
			}
			gs, _ := NewGRPCServer(Services{Secrets: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)), NewGRPCAuth(GRPCAuthConfig{IAM: iam, Region: svc.Region(), Log: slog.New(slog.DiscardHandler)}), gate)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = gs.Serve(lis) }()
			b.Cleanup(gs.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithPerRPCCredentials(benchBearer(key.GetAccessKeyId()+":"+key.GetSecretAccessKey())))
			if signed {
				conn, err = grpc.NewClient(lis.Addr().String(), append((&grpcsig.Credentials{AccessKeyID: key.GetAccessKeyId(),
					SecretAccessKey: key.GetSecretAccessKey(), Region: svc.Region()}).DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = conn.Close() })
			client := cofferv1.NewSecretsManagerServiceClient(conn)
			if x16 {
				b.SetParallelism(16)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := client.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: ids[i%len(ids)]}); err != nil {
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

type benchBearer string

func (t benchBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (benchBearer) RequireTransportSecurity() bool { return false }
