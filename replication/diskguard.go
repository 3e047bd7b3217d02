package replication

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/internal/diskspace"
)

// ErrLowDiskSpace refuses a write before it is proposed: the data volume of
// this node, or of another node of the region, is below its free-space
// threshold (Config.MinFreeBytes). A write that reached Apply on a full
// disk would make every node that cannot store it panic; refusing it up
// front keeps the region readable until an operator frees space.
var ErrLowDiskSpace = errors.New("a data volume of the region is low on free space")

// diskCheckInterval is how often a node measures its volumes to tell the
// region (gossip) and its log whether it is low on space. Proposing and
// accepting a forwarded write measure afresh.
const diskCheckInterval = 5 * time.Second

// checkOwnDisk measures the volumes of the state file and the Raft log and
// returns ErrLowDiskSpace, with the figures, when either is below the
// threshold once need more bytes are written. A node checks it before it
// proposes or forwards a write, and before a snapshot copy (need: its size).
func (n *Node) checkOwnDisk(need uint64) error {
	if n.cfg.MinFreeBytes < 0 && need == 0 {
		return nil
	}
	for _, dir := range n.dataDirs() {
		if err := diskspace.Check(n.cfg.DiskSpace, dir, n.cfg.MinFreeBytes, need); err != nil {
			if errors.Is(err, diskspace.ErrLow) {
				return fmt.Errorf("%w: node %s: %w", ErrLowDiskSpace, n.cfg.NodeID, err)
			}
			// A volume that cannot be measured is not refused for it: the
			// check guards against a full disk, not against statfs.
			n.log.Warn("cannot measure free space", "dir", dir, "err", err)
		}
	}
	return nil
}

// checkRegionDisk is what the leader checks before it appends a write to
// the log, its own or a forwarded one: its own volumes, and that no node of
// the region has gossiped that its volume is low — that node would apply
// the entry onto a full disk.
func (n *Node) checkRegionDisk() error {
	if err := n.checkOwnDisk(0); err != nil {
		return err
	}
	if n.members == nil {
		return nil
	}
	for _, m := range n.members.Members() {
		if m.Status == MemberAlive && m.Meta.LowDisk && m.Meta.Region == n.cfg.Region && m.Meta.NodeID != n.cfg.NodeID {
			return fmt.Errorf("%w: node %s reports its data volume below its threshold", ErrLowDiskSpace, m.Meta.NodeID)
		}
	}
	return nil
}

// dataDirs are the directories whose volumes hold this node's state: the
// state file's and the Raft log's (the same volume, usually).
func (n *Node) dataDirs() []string {
	state := filepath.Dir(n.store.Path())
	if filepath.Clean(n.cfg.Dir) == filepath.Clean(state) {
		return []string{state}
	}
	return []string{state, n.cfg.Dir}
}

// watchDisk measures the volumes every diskCheckInterval until the node
// stops, logs when they go low and recover, and gossips the state to the
// region, whose leader then refuses writes (checkRegionDisk).
func (n *Node) watchDisk() {
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	low := false
	for {
		err := n.checkOwnDisk(0)
		if now := err != nil; now != low {
			low = now
			if low {
				n.log.Error("data volume below its free-space threshold: the region refuses writes until space is freed", "err", err)
			} else {
				n.log.Info("data volume above its free-space threshold again: writes resume")
			}
			if n.members != nil {
				uerr := n.members.ChangeMeta(func(m *MemberMeta) bool {
					changed := m.LowDisk != low
					m.LowDisk = low
					return changed
				}, time.Second)
				if uerr != nil {
					n.log.Warn("cannot gossip the data volume's state", "low", low, "err", uerr)
				}
			}
		}
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// stateFileSize is the size of the state file, an upper bound of what a
// snapshot copy of it writes.
func (n *Node) stateFileSize() uint64 {
	st, err := os.Stat(n.store.Path())
	if err != nil {
		return 0
	}
	return uint64(st.Size())
}
