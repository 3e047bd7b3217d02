package server

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// laggingReplicator is a leader's store and a follower's: commands commit
// on the leader at once and reach the follower, whose state the Service
// reads, only at a read barrier while lag is set — a follower behind.
type laggingReplicator struct {
	mu               sync.Mutex
	leader, follower *storage.Store
	index            uint64
	lag              bool
	queue            []storage.Entry
	barriers         int
}

func (r *laggingReplicator) Apply(_ context.Context, cmd *raftv1.Command) (*storage.Result, error) {
	buf, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	forLeader, forFollower := &raftv1.Command{}, &raftv1.Command{}
	if err := proto.Unmarshal(buf, forLeader); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(buf, forFollower); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	res := r.leader.Apply(r.index, forLeader)
	if r.lag {
		r.queue = append(r.queue, storage.Entry{Index: r.index, Cmd: forFollower})
	} else {
		r.follower.Apply(r.index, forFollower)
	}
	return res, nil
}

func (r *laggingReplicator) IsLeader() bool { return true }

func (r *laggingReplicator) ReadBarrier(context.Context) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.barriers++
	for _, e := range r.queue {
		r.follower.Apply(e.Index, e.Cmd)
	}
	r.queue = nil
	return r.index, nil
}

func (r *laggingReplicator) ReadIndex(context.Context) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index, nil
}

func (r *laggingReplicator) WaitApplied(context.Context, uint64) error { return nil }

func (r *laggingReplicator) AppliedIndex() uint64 { return r.follower.AppliedIndex() }

func (r *laggingReplicator) setLag(lag bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lag, r.barriers = lag, 0
}

func (r *laggingReplicator) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.barriers
}

func TestGateDecidesOnTheStateTheServiceReads(t *testing.T) {
	open := func(name string) *storage.Store {
		s, err := storage.Open(filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	rep := &laggingReplicator{leader: open("leader.db"), follower: open("follower.db")}
	cfg := DefaultConfig()
	cfg.AccountID = "123456789012"
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, rep, rep.follower, lockedRoot(t, root), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.EnsureKeyring(ctx); err != nil {
		t.Fatal(err)
	}
	v := "the value"
	if _, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "app/db", SecretString: &v}); err != nil {
		t.Fatal(err)
	}
	iam := NewIAM(svc, rep.follower)
	doc := `{"Version":"2012-10-17","Statement":[{"Sid":"Payments","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*",
		"Condition":{"StringEquals":{"secretsmanager:ResourceTag/team":"payments"}}}]}`
	for _, step := range []func() error{
		func() error {
			_, err := iam.CreatePrincipal(ctx, &cofferv1.CreatePrincipalRequest{Name: "app"})
			return err
		},
		func() error {
			_, err := iam.PutPolicy(ctx, &cofferv1.PutPolicyRequest{Name: "tagged", Document: doc})
			return err
		},
		func() error {
			_, err := iam.AttachPolicy(ctx, &cofferv1.AttachPolicyRequest{Principal: "app", Policy: "tagged"})
			return err
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}

	// The leader tags the secret; this follower has not applied it yet.
	rep.setLag(true)
	if _, err := svc.TagResource(ctx, &cofferv1.TagResourceRequest{SecretId: "app/db", Tags: []*cofferv1.Tag{{Key: "team", Value: "payments"}}}); err != nil {
		t.Fatal(err)
	}
	if sec, err := rep.follower.Secret("app/db"); err != nil || len(sec.GetTags()) != 0 {
		t.Fatalf("the follower already has the tag (%v, %v): the test would prove nothing", sec.GetTags(), err)
	}
	authz := iam.Authorizer()
	read := func(gate *Gate, principal string, c Consistency) (string, error) {
		req := &cofferv1.GetSecretValueRequest{SecretId: "app/db"}
		call := Call{Protocol: "grpc", Operation: "GetSecretValue", Action: "secretsmanager:GetSecretValue",
			Caller: Caller{Principal: principal}, Request: req}
		ctx, x, err := gate.Begin(WithConsistency(ctx, c), call)
		if err != nil {
			return "", err
		}
		resp, err := x.Serve(func() (proto.Message, error) { return svc.GetSecretValue(ctx, req) })
		if err != nil {
			return "", err
		}
		return resp.(*cofferv1.GetSecretValueResponse).GetSecretString(), nil
	}

	// Without a read point the Gate decides on the follower's old state —
	// the bug — and a stale read is decided there by design.
	if _, err := read(&Gate{Authz: authz}, "app", Consistency{}); apiType(err) != TypeAccessDeniedException {
		t.Fatalf("a Gate without ReadPoint = %v, want the stale AccessDenied (else this test proves nothing)", err)
	}
	gate := &Gate{Authz: authz, ReadPoint: svc.ReadPoint}
	if _, err := read(gate, "app", Consistency{Stale: true}); apiType(err) != TypeAccessDeniedException {
		t.Fatalf("a stale read = %v, want AccessDenied decided on local state", err)
	}
	if n := rep.count(); n != 0 {
		t.Errorf("a stale read took %d read barriers, want 0", n)
	}

	// A linearizable read is decided after the barrier, which the Service
	// then reuses: one round in all.
	got, err := read(gate, "app", Consistency{})
	if err != nil || got != v {
		t.Fatalf("a linearizable read by app = %q, %v; want the value: the tag is committed", got, err)
	}
	if n := rep.count(); n != 1 {
		t.Errorf("a linearizable read took %d read barriers, want 1 (the Gate's, reused by the Service)", n)
	}

	// Root's decision reads no state: the Service takes the only barrier.
	rep.setLag(true)
	if got, err := read(gate, RootPrincipal, Consistency{}); err != nil || got != v {
		t.Fatalf("a read by root = %q, %v", got, err)
	}
	if n := rep.count(); n != 1 {
		t.Errorf("a read by root took %d read barriers, want 1", n)
	}
}
