package server

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit"
)

// stuckReplicator is a follower that knows the region committed ahead of
// it (commitAhead entries) and never catches up: WaitApplied blocks until
// its context ends. It records every wait and whether something bounded it.
type stuckReplicator struct {
	testkit.DirectReplicator
	commitAhead uint64

	mu        sync.Mutex
	waits     int
	unbounded int
}

func (r *stuckReplicator) ReadIndex(context.Context) (uint64, error) {
	return r.AppliedIndex() + r.commitAhead, nil
}

func (r *stuckReplicator) WaitApplied(ctx context.Context, idx uint64) error {
	if idx <= r.AppliedIndex() {
		return nil
	}
	r.mu.Lock()
	r.waits++
	_, bounded := ctx.Deadline()
	if !bounded {
		r.unbounded++
	}
	r.mu.Unlock()
	if !bounded {
		// Waiting would hang the test; the count above is the failure.
		return context.DeadlineExceeded
	}
	<-ctx.Done()
	return ctx.Err()
}

func (r *stuckReplicator) counts() (waits, unbounded int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waits, r.unbounded
}

func newStuckService(t *testing.T) (*Service, *stuckReplicator) {
	t.Helper()
	store, err := storage.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rep := &stuckReplicator{DirectReplicator: testkit.DirectReplicator{Store: store}, commitAhead: 10}
	cfg := DefaultConfig()
	cfg.AccountID = "123456789012"
	cfg.MaxReadWait = 20 * time.Millisecond
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, rep, store, lockedRoot(t, root), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.EnsureKeyring(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := "v"
	if _, err := svc.CreateSecret(context.Background(), &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	return svc, rep
}

// TestMinIndexWaits: a x-coffer-min-index the region has not committed is
// refused instead of waited for (2^64-1 used to wait forever), and a wait
// for one it has committed is bounded by the server even when the caller
// sets no deadline.
func TestMinIndexWaits(t *testing.T) {
	svc, rep := newStuckService(t)
	applied := rep.AppliedIndex()
	read := func(c Consistency) error {
		// No deadline: only the server bounds the wait.
		_, err := svc.GetSecretValue(WithConsistency(context.Background(), c), &cofferv1.GetSecretValueRequest{SecretId: "app/db"})
		return err
	}
	for _, tt := range []struct {
		name string
		c    Consistency
		want string
	}{
		{"stale, the highest index", Consistency{Stale: true, MinIndex: ^uint64(0)}, TypeInvalidParameter},
		{"stale, beyond the commit index", Consistency{Stale: true, MinIndex: applied + 11}, TypeInvalidParameter},
		{"linearizable, beyond the read point", Consistency{MinIndex: applied + 1}, TypeInvalidParameter},
		{"linearizable, the highest index", Consistency{MinIndex: ^uint64(0)}, TypeInvalidParameter},
		{"stale, committed but not applied here", Consistency{Stale: true, MinIndex: applied + 10}, TypeServiceUnavailable},
		{"stale, applied", Consistency{Stale: true, MinIndex: applied}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := read(tt.c); apiType(err) != tt.want {
				t.Fatalf("read = %v, want %q", err, tt.want)
			}
		})
	}
	waits, unbounded := rep.counts()
	if waits != 1 || unbounded != 0 {
		t.Fatalf("the reads waited %d times, %d of them without a bound; want one bounded wait (the committed index)", waits, unbounded)
	}
}

// TestGateDecidesBeforeWaitingForMinIndex: a caller the Gate refuses never
// makes the node wait for the index it names.
func TestGateDecidesBeforeWaitingForMinIndex(t *testing.T) {
	svc, rep := newStuckService(t)
	iam := NewIAM(svc, rep.Store)
	if _, err := iam.CreatePrincipal(context.Background(), &cofferv1.CreatePrincipalRequest{Name: "nobody"}); err != nil {
		t.Fatal(err)
	}
	gate := &Gate{Authz: iam.Authorizer(), ReadPoint: svc.ReadPoint}
	for _, c := range []Consistency{{MinIndex: rep.AppliedIndex() + 5}, {Stale: true, MinIndex: rep.AppliedIndex() + 5}} {
		req := &cofferv1.GetSecretValueRequest{SecretId: "app/db"}
		call := Call{Protocol: "grpc", Operation: "GetSecretValue", Action: "secretsmanager:GetSecretValue", Caller: Caller{Principal: "nobody"}, Request: req}
		ctx, x, err := gate.Begin(WithConsistency(context.Background(), c), call)
		if err == nil {
			_, err = x.Serve(func() (proto.Message, error) { return svc.GetSecretValue(ctx, req) })
		}
		if apiType(err) != TypeAccessDeniedException {
			t.Fatalf("%+v: a caller without rights got %v, want AccessDeniedException", c, err)
		}
	}
	if waits, _ := rep.counts(); waits != 0 {
		t.Fatalf("refused callers made the node wait %d times for their min-index, want 0", waits)
	}
}
