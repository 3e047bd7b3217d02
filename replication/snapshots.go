package replication

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/cofferhq/coffer/storage"
)

// This file is how a node takes snapshots in: catching its state file up
// at start, putting aside a snapshot it refused, and checking an operator's
// upload before Raft stores it.

// refusedSnapshotsDir holds, beside Raft's snapshots/, the last snapshot
// this node refused to install, for the operator to look at.
const refusedSnapshotsDir = "refused-snapshots"

// catchUpFromSnapshot restores the newest snapshot into the store when the
// store is behind it. With NoSnapshotRestoreOnStart Raft would otherwise
// skip entries the store never saw (a state file lost or restored from an
// old backup). A snapshot that does not pass storage's checks was never
// installed (the FSM refused it), so it is put aside and the next newest
// one is tried: Raft must not start from a snapshot the state never took.
func (n *Node) catchUpFromSnapshot() error {
	for {
		metas, err := n.snapshots.List()
		if err != nil || len(metas) == 0 {
			return err
		}
		newest := metas[0]
		if newest.Index <= n.store.AppliedIndex() {
			return nil
		}
		_, rc, err := n.snapshots.Open(newest.ID)
		if err != nil {
			return fmt.Errorf("raft: open snapshot %s: %w", newest.ID, err)
		}
		err = n.store.Restore(rc, newest.Index)
		_ = rc.Close()
		if errors.Is(err, storage.ErrBadSnapshot) {
			n.refuseSnapshot(newest.ID, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("raft: restore snapshot %s into state: %w", newest.ID, err)
		}
		return nil
	}
}

// refuseSnapshot moves the snapshot id, which storage refused to install,
// out of Raft's snapshot store into refused-snapshots/ (replacing the one
// refused before), so that no restart takes it for the state. The leader
// sends a follower that refused its snapshot the next one; a refusal of
// every one is a snapshot that cannot serve this region, and the log says
// why.
func (n *Node) refuseSnapshot(id string, cause error) {
	n.log.Error("refused to install a snapshot; it is kept aside and the state is unchanged",
		"snapshot", id, "err", cause, "kept_in", filepath.Join(n.cfg.Dir, refusedSnapshotsDir))
	if id == "" {
		return
	}
	aside := filepath.Join(n.cfg.Dir, refusedSnapshotsDir)
	if err := os.RemoveAll(aside); err != nil {
		n.log.Warn("could not clear the refused snapshot kept before", "err", err)
	}
	if err := os.MkdirAll(aside, 0o700); err != nil {
		n.log.Warn("could not keep the refused snapshot aside", "err", err)
		return
	}
	if err := os.Rename(filepath.Join(n.cfg.Dir, "snapshots", id), filepath.Join(aside, id)); err != nil {
		n.log.Warn("could not move the refused snapshot out of the snapshot store", "snapshot", id, "err", err)
	}
}

// restoreLocal installs an operator's snapshot through Raft, on the leader.
// The upload is written to a file beside the log and checked first
// (storage.CheckSnapshot: every record decodes, the keyring opens with this
// region's root key): Raft stores a restored snapshot and sends it to every
// node before the state machine sees it, and panics when the leader's state
// machine then refuses it. So a snapshot that cannot serve the region is
// refused here, with nothing changed.
func (n *Node) restoreLocal(size int64, r io.Reader) (uint64, error) {
	f, err := os.CreateTemp(n.cfg.Dir, "upload-*.snap")
	if err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	written, err := io.Copy(f, r)
	if err != nil {
		return 0, fmt.Errorf("restore snapshot: receive: %w", err)
	}
	if written != size {
		return 0, &storage.SnapshotError{Reason: fmt.Sprintf("%d bytes arrived where the upload announced %d", written, size)}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", err)
	}
	// A snapshot taken in another cluster (a backup restored into a region
	// formed anew) first gets this region's cluster id, so every node
	// installs a state of its own cluster and a node joining later inherits
	// the right id.
	//
	// Every restore also gets a new feed generation, chosen here (so every
	// node installs the same one): the restored change feed reuses positions
	// that other regions may have applied already, for other changes, and
	// positions applied from other regions are as of the snapshot. Shipping
	// then resets each pairing with full copies (replication/region).
	generation, err := newFeedGeneration()
	if err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", err)
	}
	staged, stagedSize, err := storage.StampRestore(f, n.cfg.Dir, n.store.ClusterID(), generation)
	if err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", err)
	}
	defer storage.RemoveStaged(staged)
	upload, written := staged, stagedSize
	if err := n.store.CheckSnapshot(upload.Name()); err != nil {
		return 0, err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: written}
	if err := n.raft.Restore(meta, upload, 0); err != nil {
		return 0, fmt.Errorf("restore snapshot: %w", err)
	}
	return n.raft.LastIndex(), nil
}

// newFeedGeneration is a random feed generation (32 hex digits).
func newFeedGeneration() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
