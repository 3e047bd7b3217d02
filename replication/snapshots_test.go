package replication

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cofferhq/coffer/storage"
)

// TestRefusedSnapshotIsNeverInstalled (issue 13, item 12): a snapshot that
// storage refuses — here one whose state file is garbage, with a valid
// checksum — is not installed by the FSM (the state stays, and the
// snapshot is put aside), and a node whose state file is behind it does not
// start from it: it is moved out of Raft's snapshot store and the previous
// snapshot, plus the log, brings the node back.
func TestRefusedSnapshotIsNeverInstalled(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	tn := startTestNode(t, dir, addr)
	t.Cleanup(tn.stop)
	ctx := t.Context()
	for i := range 20 {
		if res, err := tn.node.Apply(ctx, createCmd(i)); err != nil || res.Err != nil {
			t.Fatalf("apply %d: %v %+v", i, err, res)
		}
	}
	if err := tn.node.Snapshot(); err != nil {
		t.Fatal(err)
	}

	// The FSM refuses a snapshot storage refuses, leaving the state.
	var refused []string
	fsm := &FSM{store: tn.store, refuse: func(id string, _ error) { refused = append(refused, id) }}
	err := fsm.Restore(io.NopCloser(bytes.NewReader([]byte("not a state database"))))
	if !errors.Is(err, storage.ErrBadSnapshot) || len(refused) != 1 {
		t.Fatalf("FSM.Restore of garbage: %v (refused %v), want ErrBadSnapshot and the snapshot put aside", err, refused)
	}
	if got := countSecrets(t, tn.store); got != 20 {
		t.Fatalf("after the refused install: %d secrets, want 20", got)
	}
	tn.stop()

	// A newer snapshot in the store that does not validate, and a lost
	// state file: the node must not start from that snapshot.
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "raft"), 3, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("snapshots: %v, %v", metas, err)
	}
	good := metas[0]
	_, trans := raft.NewInmemTransport("") // encodes the peers of the legacy metadata
	sink, err := snaps.Create(raft.SnapshotVersionMax, good.Index+1000, good.Term, good.Configuration, good.ConfigurationIndex, trans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("a checksummed file that is no state database")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	bad := sink.ID()
	if err := os.Remove(filepath.Join(dir, "state.db")); err != nil {
		t.Fatal(err)
	}
	tn = startTestNode(t, dir, addr)
	pollUntil(t, 30*time.Second, "the state to be rebuilt from the good snapshot and the log", func() bool { return countSecrets(t, tn.store) == 20 })
	if _, err := os.Stat(filepath.Join(dir, "raft", "snapshots", bad)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused snapshot %s is still in the snapshot store: %v", bad, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", refusedSnapshotsDir, bad)); err != nil {
		t.Errorf("the refused snapshot %s was not kept aside: %v", bad, err)
	}
	if res, err := tn.node.Apply(ctx, createCmd(20)); err != nil || res.Err != nil {
		t.Fatalf("apply after the restart: %v %+v", err, res)
	}
}
