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
	"github.com/cofferhq/coffer/storage"
)

// directReplicator commits commands straight to a store, in order, after a
// protobuf round trip — the log without Raft, for service-level tests.
type directReplicator struct {
	mu    sync.Mutex
	store *storage.Store
	index uint64
}

func (d *directReplicator) Apply(_ context.Context, cmd *raftv1.Command) (*storage.Result, error) {
	buf, err := proto.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	decoded := &raftv1.Command{}
	if err := proto.Unmarshal(buf, decoded); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.index++
	return d.store.Apply(d.index, decoded), nil
}

func (d *directReplicator) IsLeader() bool { return true }

func (d *directReplicator) ReadBarrier(context.Context) (uint64, error) { return d.AppliedIndex(), nil }

func (d *directReplicator) WaitApplied(context.Context, uint64) error { return nil }

func (d *directReplicator) AppliedIndex() uint64 { return d.store.AppliedIndex() }

// newTestService returns a ready Service over a fresh store.
func newTestService(tb testing.TB) (*Service, *storage.Store) {
	tb.Helper()
	store, err := storage.Open(filepath.Join(tb.TempDir(), "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		tb.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AccountID = "123456789012"
	svc, err := New(cfg, &directReplicator{store: store}, store, root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.EnsureKeyring(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return svc, store
}

// apiType returns the AWS error type a caller would see for err, or "".
func apiType(err error) string {
	if err == nil {
		return ""
	}
	return AsAPIError(err).Type
}

const (
	tokA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	tokB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	tokC = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
)
