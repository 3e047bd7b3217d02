package replication

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskspace"
	"github.com/cofferhq/coffer/storage"
)

// TestLowDiskRefusesProposals: below its free-space threshold a node
// proposes nothing — the write is refused with ErrLowDiskSpace before it
// reaches the log, so Apply never meets a full disk — and a snapshot copy
// that would not fit is refused too. Writes resume once space is free.
func TestLowDiskRefusesProposals(t *testing.T) {
	dir := t.TempDir()
	store, err := storage.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsMat, _, _, err := ca.IssueNode("n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var free atomic.Uint64
	free.Store(10 << 30)
	n, err := Start(Config{
		NodeID: "n1", Dir: filepath.Join(dir, "raft"), BindAddr: freeAddr(t), Bootstrap: true, TLS: tlsMat,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond,
		MinFreeBytes: 1 << 30,
		DiskSpace: func(string) (diskspace.Usage, error) {
			return diskspace.Usage{Free: free.Load(), Total: 100 << 30}, nil
		},
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	ctx := context.Background()
	pollUntil(t, 30*time.Second, "the single voter to lead", n.IsLeader)
	if _, err := n.Apply(ctx, createCmd(1)); err != nil {
		t.Fatal(err)
	}
	last := n.raft.LastIndex()

	free.Store(900 << 20)
	_, err = n.Apply(ctx, createCmd(2))
	if !errors.Is(err, ErrLowDiskSpace) || !strings.Contains(err.Error(), "900.0 MiB free") {
		t.Fatalf("Apply below the threshold = %v, want ErrLowDiskSpace with the figures", err)
	}
	if got := n.raft.LastIndex(); got != last {
		t.Fatalf("the refused write reached the log: last index %d, was %d", got, last)
	}
	free.Store(1<<30 + n.stateFileSize() + 1<<20) // room for a copy of the state
	if err := n.SaveSnapshot(ctx, discard{}, func(SnapshotInfo) {}); err != nil {
		t.Fatalf("a snapshot that fits: %v", err)
	}
	free.Store(1<<30 + n.stateFileSize()/2)
	if err := n.SaveSnapshot(ctx, discard{}, func(SnapshotInfo) {}); !errors.Is(err, ErrLowDiskSpace) {
		t.Fatalf("a snapshot copy that would not fit = %v, want ErrLowDiskSpace", err)
	}

	free.Store(10 << 30)
	if res, err := n.Apply(ctx, createCmd(2)); err != nil || res.Err != nil {
		t.Fatalf("Apply once space is free: %v %v", err, res)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
