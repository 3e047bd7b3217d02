package replication

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// FSM adapts the storage state machine to hashicorp/raft. It decodes log
// entries and hands whole batches to storage, which applies each batch in one
// bbolt transaction.
type FSM struct {
	store *storage.Store
	// applied, when set, is advanced after every batch so readers waiting
	// for an index wake up.
	applied *appliedWaiter
	// snapshots, when set, tells Restore the Raft index of the snapshot
	// being installed: Raft saves it in the store before restoring from it.
	snapshots raft.SnapshotStore
	// refuse, when set, is told the id of a snapshot storage refused.
	refuse func(id string, cause error)
	// observe, when set, times applies, snapshots and restores.
	observe Observer
}

var (
	_ raft.BatchingFSM = (*FSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// NewFSM wraps store.
func NewFSM(store *storage.Store) *FSM { return &FSM{store: store} }

// Apply applies one entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in one storage transaction. Entries
// other than commands only advance the applied index. An entry that does not
// decode panics: it was written by a proposer of this cluster, so bad bytes
// mean corruption, and a replica must stop rather than diverge.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	entries := make([]storage.Entry, len(logs))
	for i, l := range logs {
		entries[i].Index = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		cmd := &raftv1.Command{}
		if err := proto.Unmarshal(l.Data, cmd); err != nil {
			panic(fmt.Sprintf("replication: undecodable command at index %d: %v", l.Index, err))
		}
		entries[i].Cmd = cmd
	}
	start := time.Now()
	results := f.store.ApplyBatch(entries)
	if f.observe != nil {
		f.observe.ObserveApply(time.Since(start), len(entries))
	}
	if f.applied != nil && len(logs) > 0 {
		f.applied.advance(logs[len(logs)-1].Index)
	}
	out := make([]interface{}, len(results))
	for i, r := range results {
		out[i] = r
	}
	return out
}

// Snapshot starts a point-in-time snapshot: a bbolt read transaction that
// Persist streams while writes go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := f.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("fsm snapshot: %w", err)
	}
	return &fsmSnapshot{sn: sn, observe: f.observe}, nil
}

// Restore replaces the state with a snapshot's. The snapshot's Raft index,
// not the applied index stored inside it, is where this node now stands (a
// backup from elsewhere may carry any index), so storage writes it into the
// new state file before the file replaces the old one: entries after it
// must apply. A snapshot storage refuses (a record that does not decode, a
// keyring this region's root key does not open) leaves the state as it was
// and is put aside (refuse), so that no restart takes it.
func (f *FSM) Restore(rc io.ReadCloser) error {
	var index uint64
	var id string
	if f.snapshots != nil {
		if metas, err := f.snapshots.List(); err == nil && len(metas) > 0 {
			index, id = metas[0].Index, metas[0].ID
		}
	}
	start := time.Now()
	err := f.store.Restore(rc, index)
	_ = rc.Close()
	if err == nil && f.observe != nil {
		f.observe.ObserveRestore(time.Since(start))
	}
	if err != nil {
		if errors.Is(err, storage.ErrBadSnapshot) && f.refuse != nil {
			f.refuse(id, err)
		}
		return fmt.Errorf("fsm restore: %w", err)
	}
	if f.applied != nil {
		f.applied.reset(f.store.AppliedIndex())
	}
	return nil
}

type fsmSnapshot struct {
	sn      *storage.Snapshot
	observe Observer
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	w := &countingWriter{w: sink}
	if _, err := s.sn.WriteTo(w); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.observe != nil {
		s.observe.ObserveSnapshot(time.Since(start), w.n)
	}
	return nil
}

func (s *fsmSnapshot) Release() { s.sn.Release() }
