package server

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
	"github.com/cofferhq/coffer/test/testkit"
)

// The service-level tests commit through testkit's replicator, the log
// without Raft.
var _ Replicator = (*testkit.DirectReplicator)(nil)

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
	svc, err := New(cfg, &testkit.DirectReplicator{Store: store}, store, lockedRoot(tb, root), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.EnsureKeyring(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return svc, store
}

// lockedRoot holds a test's root key as a node does: in locked memory
// where the platform allows, unlocked otherwise.
func lockedRoot(tb testing.TB, root []byte) *kms.LockedKey {
	tb.Helper()
	k, err := kms.NewLockedKey(root, kms.LockBestEffort)
	if err != nil {
		tb.Fatal(err)
	}
	return k
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
