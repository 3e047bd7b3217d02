package testkit

import (
	"context"
	"sync"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// DirectReplicator commits commands straight to Store, in order, after a
// protobuf round trip — the log without Raft, for service-level tests. It
// has the methods of server.Replicator and always leads.
type DirectReplicator struct {
	Store *storage.Store

	mu    sync.Mutex
	index uint64
}

// Apply marshals cmd, unmarshals it as a follower would read it from the
// log and applies it at the next index.
func (d *DirectReplicator) Apply(_ context.Context, cmd *raftv1.Command) (*storage.Result, error) {
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
	return d.Store.Apply(d.index, decoded), nil
}

// IsLeader is always true: there is no one else.
func (d *DirectReplicator) IsLeader() bool { return true }

// ReadBarrier returns the applied index: everything committed is applied.
func (d *DirectReplicator) ReadBarrier(context.Context) (uint64, error) { return d.AppliedIndex(), nil }

// ReadIndex is the applied index: the commit index, for the same reason.
func (d *DirectReplicator) ReadIndex(context.Context) (uint64, error) { return d.AppliedIndex(), nil }

// WaitApplied returns at once, for the same reason.
func (d *DirectReplicator) WaitApplied(context.Context, uint64) error { return nil }

// AppliedIndex is the store's applied index.
func (d *DirectReplicator) AppliedIndex() uint64 { return d.Store.AppliedIndex() }
