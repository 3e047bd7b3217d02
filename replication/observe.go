package replication

import (
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// Observer receives the Raft events a node's metrics count (Config.Observer;
// metrics.Metrics implements it). Calls come from Raft's own goroutines and
// must not block.
type Observer interface {
	// ObserveApply: one batch of committed entries applied to the state
	// machine, its state.db commit (fsync) included.
	ObserveApply(d time.Duration, entries int)
	// ObserveCommit: one proposal on this node as leader, from Apply to
	// its result, or failed when it did not commit.
	ObserveCommit(d time.Duration, failed bool)
	// ObserveLogAppend: one append to the Raft log (an fsync'd bbolt
	// transaction).
	ObserveLogAppend(d time.Duration)
	// ObserveSnapshot: one snapshot written, and its size.
	ObserveSnapshot(d time.Duration, size int64)
	// ObserveRestore: one snapshot installed.
	ObserveRestore(d time.Duration)
	// ObserveReadIndex: one read-index round, shared by reads reads.
	ObserveReadIndex(reads int)
	// LeaderChanged: the leader this node knows changed.
	LeaderChanged()
}

// RaftView is a node's Raft state as its metrics and health checks read
// it.
type RaftView struct {
	HasLeader, IsLeader                           bool
	Term, CommitIndex, AppliedIndex, LastLogIndex uint64
	// LastContact is the time since the leader was last heard from; zero
	// on the leader, and on a node that never heard one.
	LastContact time.Duration
	Voters      int
}

// View reads the node's Raft state.
func (n *Node) View() RaftView {
	v := RaftView{
		HasLeader: n.leaderAddr() != "", IsLeader: n.IsLeader(),
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.store.AppliedIndex(),
		LastLogIndex: n.raft.LastIndex(),
	}
	if !v.IsLeader {
		if at := n.raft.LastContact(); !at.IsZero() {
			v.LastContact = time.Since(at)
		}
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				v.Voters++
			}
		}
	}
	return v
}

// timedLogStore times appends to the Raft log.
type timedLogStore struct {
	raft.LogStore
	obs Observer
}

func (s timedLogStore) StoreLog(l *raft.Log) error {
	start := time.Now()
	err := s.LogStore.StoreLog(l)
	s.obs.ObserveLogAppend(time.Since(start))
	return err
}

func (s timedLogStore) StoreLogs(logs []*raft.Log) error {
	start := time.Now()
	err := s.LogStore.StoreLogs(logs)
	s.obs.ObserveLogAppend(time.Since(start))
	return err
}

// withObserver wraps a log store in timing when obs is set.
func withObserver(ls raft.LogStore, obs Observer) raft.LogStore {
	if obs == nil {
		return ls
	}
	return timedLogStore{LogStore: ls, obs: obs}
}

// observeLeaderChanges counts leader changes until the node stops.
func (n *Node) observeLeaderChanges() {
	if n.cfg.Observer == nil {
		return
	}
	ch := make(chan raft.Observation, 16)
	ob := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(ob)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.raft.DeregisterObserver(ob)
		var last raft.ServerID
		for {
			select {
			case <-n.stop:
				return
			case o := <-ch:
				lo := o.Data.(raft.LeaderObservation)
				if lo.LeaderID != "" && lo.LeaderID != last {
					last = lo.LeaderID
					n.cfg.Observer.LeaderChanged()
				}
			}
		}
	}()
}

// countingWriter counts the bytes a snapshot writes.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}

// Stopping tells the node that it is about to stop (the composition root
// calls it first thing in its Stop): from then on Raft's complaints about
// peers that are gone and elections it cannot win are logged at Info, so a
// clean stop leaves no ERROR lines. Shutdown implies it.
func (n *Node) Stopping() {
	if n.stopping != nil {
		n.stopping.Store(true)
	}
}
