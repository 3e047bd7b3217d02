package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
)

// appliedWaiter lets readers wait until the state machine has applied a
// given index. The FSM advances it after every batch.
//
// Raft's no-op and barrier entries never reach the FSM, so a read index can
// name one that the FSM will never report. Such an index counts as reached
// when Raft has processed it AND every entry after the FSM's index up to it
// is a no-op or barrier (onlyRaftEntries). Raft's own applied index alone is
// not enough: hashicorp/raft advances it when it queues entries for the FSM,
// before the FSM has applied them. Waiters check on a short poll, which only
// matters while the log's tail is such entries (just after a leader change);
// otherwise the FSM's next batch wakes them.
type appliedWaiter struct {
	mu              sync.Mutex
	index           uint64
	waiters         map[chan struct{}]uint64
	raftApplied     func() uint64
	onlyRaftEntries func(from, to uint64) bool
}

const appliedPoll = 2 * time.Millisecond

func newAppliedWaiter(start uint64) *appliedWaiter {
	return &appliedWaiter{index: start, waiters: map[chan struct{}]uint64{}}
}

// advance records that everything up to idx is applied and wakes the
// readers waiting for it.
func (w *appliedWaiter) advance(idx uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if idx <= w.index {
		return
	}
	w.index = idx
	for ch, want := range w.waiters {
		if want <= idx {
			close(ch)
			delete(w.waiters, ch)
		}
	}
}

// reset sets the index after a snapshot restore, which may move it either way.
func (w *appliedWaiter) reset(idx uint64) {
	w.mu.Lock()
	w.index = 0
	w.mu.Unlock()
	w.advance(idx)
}

func (w *appliedWaiter) current() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.index
}

// reached is called with w.mu held.
func (w *appliedWaiter) reached(idx uint64) bool {
	if w.raftApplied == nil || w.onlyRaftEntries == nil || w.raftApplied() < idx {
		return false
	}
	return w.onlyRaftEntries(w.index+1, idx)
}

// wait returns once idx is applied, or with ctx's error.
func (w *appliedWaiter) wait(ctx context.Context, idx uint64) error {
	w.mu.Lock()
	if w.index >= idx || w.reached(idx) {
		w.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	w.waiters[ch] = idx
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.waiters, ch)
		w.mu.Unlock()
	}()
	t := time.NewTicker(appliedPoll)
	defer t.Stop()
	for {
		select {
		case <-ch:
			return nil
		case <-t.C:
			w.mu.Lock()
			ok := w.index >= idx || w.reached(idx)
			w.mu.Unlock()
			if ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readIndexBatcher coalesces concurrent read-index requests: every request
// that arrives while a round is in flight joins the next round, so a
// thousand concurrent reads cost one quorum round (or one RPC to the
// leader), not a thousand. A round's index is taken after every request in
// it arrived, which is what makes the reads linearizable.
type readIndexBatcher struct {
	fetch func(ctx context.Context) (uint64, error)

	mu      sync.Mutex
	pending []chan readIndexResult
	running bool
}

type readIndexResult struct {
	index uint64
	err   error
}

// rounds counts completed rounds, for tests and metrics.
func (b *readIndexBatcher) readIndex(ctx context.Context) (uint64, error) {
	ch := make(chan readIndexResult, 1)
	b.mu.Lock()
	b.pending = append(b.pending, ch)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (b *readIndexBatcher) loop() {
	for {
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		// The round has its own deadline: the callers' contexts may differ,
		// and a caller that gave up must not cancel the others' round.
		ctx, cancel := context.WithTimeout(context.Background(), readIndexTimeout)
		idx, err := b.fetch(ctx)
		cancel()
		for _, ch := range batch {
			ch <- readIndexResult{idx, err}
		}
	}
}

// fetchReadIndex is one read-index round: on the leader, confirm
// leadership; on a follower, ask the leader.
func (n *Node) fetchReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		c, err := n.leaderClient(ctx)
		if err != nil {
			return 0, err
		}
		resp, err := c.ReadIndex(ctx, &replicationv1.ReadIndexRequest{})
		if err != nil {
			err = fromStatus(err)
			if errors.Is(err, ErrNotLeader) || errors.Is(err, errPeerUnreachable) {
				return 0, fmt.Errorf("%w: %v", ErrNoLeader, err)
			}
			return 0, err
		}
		return resp.GetIndex(), nil
	}
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() != term {
		// A new leader's commit index can lag the true one until an entry
		// of its own term commits; the barrier waits for exactly that. If
		// the term moves meanwhile, the next round barriers again.
		if err := n.raft.Barrier(readIndexTimeout).Error(); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		n.readyTerm.Store(term)
	}
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return idx, nil
}
