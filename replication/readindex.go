package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
)

// appliedWaiter lets readers wait until the state machine has applied a
// given index. The FSM advances it after every batch, which wakes the
// waiters it satisfies: a notification, not a poll.
//
// Raft's no-op and barrier entries never reach the FSM, so a read index can
// name one that the FSM will never report. Such an index counts as reached
// when Raft has processed it AND every entry after the FSM's index up to it
// is a no-op or barrier (onlyRaftEntries). Raft's own applied index alone is
// not enough: hashicorp/raft advances it when it queues entries for the FSM,
// before the FSM has applied them, and it tells no one when it moves. So
// while anyone waits, one watcher (not each waiter) reads Raft's applied
// index every appliedPoll, without holding mu, and reads the log only when
// that index has moved — which matters only while the log's tail is such
// entries (just after a leader change); otherwise the FSM's next batch
// wakes the waiters first.
type appliedWaiter struct {
	mu      sync.Mutex
	index   uint64
	waiters map[chan struct{}]uint64
	// watching is true while the watcher goroutine runs; added counts the
	// waiters ever registered, so it knows when it has new ones to look at.
	watching        bool
	added           uint64
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
	w.wakeLocked(idx)
}

// wakeLocked wakes every waiter for an index at or below idx; w.mu is held.
func (w *appliedWaiter) wakeLocked(idx uint64) {
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

// wait returns once idx is applied, or with ctx's error.
func (w *appliedWaiter) wait(ctx context.Context, idx uint64) error {
	w.mu.Lock()
	fsm, raftApplied, onlyRaftEntries := w.index, w.raftApplied, w.onlyRaftEntries
	w.mu.Unlock()
	if fsm >= idx {
		return nil
	}
	// Reached already through Raft's own entries (a read index naming the
	// barrier of a term with no write since): answered at once, and the
	// log read without the lock.
	if raftApplied != nil && onlyRaftEntries != nil && raftApplied() >= idx && onlyRaftEntries(fsm+1, idx) {
		return nil
	}
	w.mu.Lock()
	if w.index >= idx {
		w.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	w.waiters[ch] = idx
	w.added++
	if !w.watching && w.raftApplied != nil && w.onlyRaftEntries != nil {
		w.watching = true
		go w.watch(w.raftApplied, w.onlyRaftEntries)
	}
	w.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, waiting := w.waiters[ch]; !waiting {
			return nil // woken as the context ended: the index is applied
		}
		delete(w.waiters, ch)
		return ctx.Err()
	}
}

// watch runs while anyone waits: it wakes the waiters whose index Raft has
// processed with nothing but Raft's own entries after the FSM's index. It
// reads the log only when Raft's applied index or the FSM's has moved, or a
// waiter arrived, since it last looked, and never while holding mu.
func (w *appliedWaiter) watch(raftApplied func() uint64, onlyRaftEntries func(from, to uint64) bool) {
	t := time.NewTicker(appliedPoll)
	defer t.Stop()
	var lastRaft, lastFSM, lastAdded uint64
	for range t.C {
		w.mu.Lock()
		if len(w.waiters) == 0 {
			w.watching = false
			w.mu.Unlock()
			return
		}
		fsm, added := w.index, w.added
		var wanted []uint64
		for _, want := range w.waiters {
			wanted = append(wanted, want)
		}
		w.mu.Unlock()
		r := raftApplied()
		if r == lastRaft && fsm == lastFSM && added == lastAdded {
			continue
		}
		lastRaft, lastFSM, lastAdded = r, fsm, added
		// Reaching an index is monotonic, so the highest reachable waiter
		// settles every one below it.
		slices.Sort(wanted)
		wanted = slices.Compact(wanted)
		for i := len(wanted) - 1; i >= 0; i-- {
			if wanted[i] > r {
				continue
			}
			if onlyRaftEntries(fsm+1, wanted[i]) {
				w.mu.Lock()
				w.wakeLocked(wanted[i])
				w.mu.Unlock()
				break
			}
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
	// observe, when set, is told of every round that succeeded.
	observe Observer

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
		if err == nil && b.observe != nil {
			b.observe.ObserveReadIndex(len(batch))
		}
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
