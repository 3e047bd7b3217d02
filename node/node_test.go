package node_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
)

func startReady(t *testing.T, opts node.Options) (*node.Node, time.Duration) {
	t.Helper()
	begin := time.Now()
	n, err := node.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		_ = n.Stop()
		t.Fatal(err)
	}
	return n, time.Since(begin)
}

// TestRestartServesWithoutReplay fills a node with secrets, restarts it and
// reports how long it took from start to serving. The count comes from
// COFFER_RESTART_SECRETS (100000 for the figure in the docs; a small default
// keeps CI quick). It logs the time; it never asserts one.
func TestRestartServesWithoutReplay(t *testing.T) {
	count := 2000
	if v := os.Getenv("COFFER_RESTART_SECRETS"); v != "" {
		var err error
		if count, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	opts := clustertest.SingleNodeOptions(t, t.TempDir())
	n, first := startReady(t, opts)
	t.Logf("empty node: start to serving %v", first)

	var next atomic.Int64
	var wg sync.WaitGroup
	fillStart := time.Now()
	errs := make(chan error, 1)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(count) {
					return
				}
				v := fmt.Sprintf("value-%d", i)
				if _, err := n.Service().CreateSecret(context.Background(), &cofferv1.CreateSecretRequest{
					Name: fmt.Sprintf("fill/%06d", i), SecretString: &v,
				}); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	fill := time.Since(fillStart)
	t.Logf("created %d secrets in %v (%.0f creates/s, 64 concurrent, one node)", count, fill, float64(count)/fill.Seconds())
	applied := n.Store().AppliedIndex()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	n, took := startReady(t, opts)
	defer n.Stop()
	t.Logf("restart with %d secrets (applied index %d): start to serving %v", count, applied, took)
	if got := n.Store().AppliedIndex(); got < applied {
		t.Fatalf("applied index after restart %d < %d before", got, applied)
	}
	last := fmt.Sprintf("fill/%06d", count)
	got, err := n.Service().GetSecretValue(context.Background(), &cofferv1.GetSecretValueRequest{SecretId: last})
	if err != nil || got.GetSecretString() != fmt.Sprintf("value-%d", count) {
		t.Fatalf("read after restart: %v %v", got, err)
	}
	page, err := n.Service().ListSecrets(context.Background(), &cofferv1.ListSecretsRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{"fill/"}}}})
	if err != nil || len(page.GetSecretList()) == 0 {
		t.Fatalf("list after restart: %v", err)
	}
}
