package replication

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/test/wait"
)

// TestAppliedWaiterReadsTheLogOnlyWhenRaftMoves: many readers waiting for
// an index that Raft has processed but the FSM has not (a command entry is
// still in flight) must not each poll the log on the lock the apply path
// takes. One watcher looks at Raft's applied index and reads the log only
// when it moved; the FSM's advance wakes everyone.
func TestAppliedWaiterReadsTheLogOnlyWhenRaftMoves(t *testing.T) {
	w := newAppliedWaiter(10)
	var raftReads, logReads atomic.Int64
	var raftIndex atomic.Uint64
	raftIndex.Store(20)
	w.mu.Lock()
	w.raftApplied = func() uint64 { raftReads.Add(1); return raftIndex.Load() }
	// Entry 11 is a command the FSM has not applied yet: nothing up to 20
	// is reached through Raft's own entries.
	w.onlyRaftEntries = func(from, to uint64) bool { logReads.Add(1); return from > 11 }
	w.mu.Unlock()

	const readers = 50
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.wait(context.Background(), 15)
		}()
	}
	wait.True(t, 10*time.Second, "every reader to wait", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.waiters) == readers
	})
	// Once the watcher has seen every reader, let it look many times over
	// while nothing moves: the log is not read again.
	seen := raftReads.Load() + 2
	wait.True(t, 10*time.Second, "the watcher to see every reader", func() bool { return raftReads.Load() >= seen })
	before, looks := logReads.Load(), raftReads.Load()
	wait.True(t, 10*time.Second, "the watcher to look at Raft 50 more times", func() bool { return raftReads.Load() >= looks+50 })
	if n := logReads.Load() - before; n > 0 {
		t.Fatalf("the log was read %d times while neither Raft nor the FSM moved nor a reader came; want none", n)
	}
	// Raft moves on: one look at the log, which finds a command in the way.
	raftIndex.Store(21)
	wait.True(t, 10*time.Second, "the watcher to see Raft move", func() bool { return logReads.Load() > before })

	// The FSM applies 11..15: its own notification wakes every reader.
	w.advance(15)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	wait.True(t, 10*time.Second, "the watcher to stop once no one waits", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return !w.watching
	})
}

// TestAppliedWaiterRaftOnlyTail: an index reached only through Raft's own
// entries (a new leader's no-op) wakes its readers without the FSM moving.
func TestAppliedWaiterRaftOnlyTail(t *testing.T) {
	w := newAppliedWaiter(10)
	w.mu.Lock()
	w.raftApplied = func() uint64 { return 12 }
	w.onlyRaftEntries = func(from, to uint64) bool { return to <= 12 }
	w.mu.Unlock()
	if err := w.wait(context.Background(), 12); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.wait(ctx, 13); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait beyond Raft's applied index with a cancelled context = %v, want context.Canceled", err)
	}

	// A reader arriving while the watcher runs (for another reader that
	// waits on) is looked at, though neither Raft nor the FSM moved since.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	beyond := make(chan error, 1)
	go func() { beyond <- w.wait(ctx, 13) }()
	wait.True(t, 10*time.Second, "the watcher to run for the reader beyond Raft", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.watching && len(w.waiters) == 1
	})
	if err := w.wait(context.Background(), 11); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-beyond; !errors.Is(err, context.Canceled) {
		t.Fatalf("the reader beyond Raft = %v, want context.Canceled", err)
	}
}
