package awsjson

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// BenchmarkGetSecretValueAWS is server's BenchmarkGetSecretValueGRPC over
// the AWS protocol: the real SDK client (SigV4 signing included) over
// loopback HTTP to the handler and the service. It reports the median and
// p99 latency of a single call as p50-ns and p99-ns.
func BenchmarkGetSecretValueAWS(b *testing.B) {
	sm, _ := startAWS(b)
	ctx := context.Background()
	val := string(make([]byte, 256))
	ids := make([]string, 100)
	for i := range ids {
		out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(fmt.Sprintf("bench/%04d", i)), SecretString: aws.String(val)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = aws.ToString(out.ARN)
	}
	var mu sync.Mutex
	var latencies []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		i := 0
		for pb.Next() {
			start := time.Now()
			if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ids[i%len(ids)])}); err != nil {
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
	if len(latencies) > 0 {
		slices.Sort(latencies)
		b.ReportMetric(float64(latencies[len(latencies)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(latencies[len(latencies)*99/100].Nanoseconds()), "p99-ns")
	}
}

// BenchmarkHandlerGetSecretValue is the handler alone, in process: what the
// AWS protocol adds to server's BenchmarkGetSecretValue (routing, JSON in
// and out, request id, logging) without a client or a socket.
func BenchmarkHandlerGetSecretValue(b *testing.B) {
	svc := newService(b)
	h := &Handler{Service: svc, Auth: allowAll{}, Logger: discardLogger()}
	val := string(make([]byte, 256))
	bodies := make([]string, 100)
	for i := range bodies {
		out, err := svc.CreateSecret(context.Background(), &cofferv1.CreateSecretRequest{Name: fmt.Sprintf("bench/%04d", i), SecretString: &val})
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = `{"SecretId":"` + out.GetArn() + `"}`
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(bodies[i%len(bodies)]))
			req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
			req.Header.Set("Content-Type", ContentType)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("%d %s", rec.Code, rec.Body)
				return
			}
			i++
		}
	})
}
