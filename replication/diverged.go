package replication

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ErrDiverged: a consistency check found this node's state different from
// its region's; it serves no client requests until an operator acts.
var ErrDiverged = errors.New("this node's state diverged from its region's")

// Divergence is what a consistency check recorded when it marked this
// node diverged. It is kept in the marker file (Config.DivergedMarker), so
// the mark outlives restarts until an operator clears it: by wiping the
// data directory (the node then resyncs from a snapshot), or by a passing
// `coffer cluster check` after a manual resync.
type Divergence struct {
	// Index is the check point: the Raft index every node hashed at.
	Index uint64 `json:"index"`
	// Hash is this node's hash at Index; MajorityHash the region's.
	Hash         string `json:"hash"`
	MajorityHash string `json:"majority_hash"`
	// LeaderID is the leader that ran the check.
	LeaderID string `json:"leader_id"`
	// Detected is when this node was marked.
	Detected time.Time `json:"detected"`
}

// Error describes the divergence for logs and for a refused request.
func (d *Divergence) Error() string {
	return fmt.Sprintf("%v at index %d: its state hashes to %s, the majority's to %s (checked by %s at %s)",
		ErrDiverged, d.Index, short(d.Hash), short(d.MajorityHash), d.LeaderID, d.Detected.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrDiverged) hold.
func (d *Divergence) Unwrap() error { return ErrDiverged }

func short(hexHash string) string {
	if len(hexHash) > 16 {
		return hexHash[:16]
	}
	return hexHash
}

// Diverged returns the divergence this node is marked with, or nil.
func (n *Node) Diverged() *Divergence { return n.diverged.Load() }

// loadDivergence reads the marker left by an earlier run.
func (n *Node) loadDivergence() error {
	b, err := os.ReadFile(n.cfg.DivergedMarker)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the diverged marker %s: %w", n.cfg.DivergedMarker, err)
	}
	d := &Divergence{}
	if err := json.Unmarshal(b, d); err != nil {
		// A marker that does not parse still marks the node: its
		// existence is the operator's signal.
		d = &Divergence{Hash: "unknown", MajorityHash: "unknown", LeaderID: "unknown"}
	}
	n.diverged.Store(d)
	n.log.Error("this node is marked diverged from its region and serves no client requests; "+
		"wipe its data directory to resync it from a snapshot, or resync it and run `coffer cluster check` (docs/OPERATIONS.md)",
		"marker", n.cfg.DivergedMarker, "divergence", d.Error())
	return nil
}

// markDiverged records that this node diverged: the marker file first
// (fsynced), then the in-memory mark the APIs check.
func (n *Node) markDiverged(index uint64, hash, majority []byte, leader string) {
	d := &Divergence{Index: index, Hash: hex.EncodeToString(hash), MajorityHash: hex.EncodeToString(majority), LeaderID: leader, Detected: time.Now()}
	b, _ := json.MarshalIndent(d, "", "  ")
	if err := os.MkdirAll(filepath.Dir(n.cfg.DivergedMarker), 0o700); err != nil {
		n.log.Error("could not write the diverged marker; the mark lasts until this node restarts", "marker", n.cfg.DivergedMarker, "err", err)
	} else if err := writeFileAtomic(n.cfg.DivergedMarker, append(b, '\n'), 0o600); err != nil {
		n.log.Error("could not write the diverged marker; the mark lasts until this node restarts", "marker", n.cfg.DivergedMarker, "err", err)
	}
	n.diverged.Store(d)
	n.log.Error("CONSISTENCY CHECK FAILED: this node's state diverged from its region's; it stops serving client requests. "+
		"Wipe its data directory to resync it from a snapshot, or resync it and run `coffer cluster check` (docs/OPERATIONS.md)",
		"index", index, "hash", d.Hash, "majority_hash", d.MajorityHash, "checked_by", leader, "marker", n.cfg.DivergedMarker)
	n.notifyDivergence(true)
}

// clearDiverged removes the mark, after a check the operator ran found this
// node matching again.
func (n *Node) clearDiverged(index uint64, leader string) {
	if n.diverged.Load() == nil {
		return
	}
	if err := os.Remove(n.cfg.DivergedMarker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		n.log.Error("could not remove the diverged marker; the node will be marked again when it restarts", "marker", n.cfg.DivergedMarker, "err", err)
	}
	n.diverged.Store(nil)
	n.log.Warn("consistency check passed: this node's state matches its region's again; it serves client requests",
		"index", index, "checked_by", leader)
	n.notifyDivergence(false)
}

func (n *Node) notifyDivergence(diverged bool) {
	if n.cfg.OnDiverged != nil {
		n.cfg.OnDiverged(diverged)
	}
}
