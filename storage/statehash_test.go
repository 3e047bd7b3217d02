package storage_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// history is a few commands touching most buckets: secrets and values,
// principals, policies and the meta bucket's cluster id.
func history(arn string) []proto.Message {
	return []proto.Message{
		&raftv1.InitCluster{ClusterId: "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"},
		createWithValue("db", "AbCdEf", 1, "v1"),
		putOp(arn, 2, "v2"),
		&raftv1.TagResource{Arn: arn, Tags: tags("team", "db")},
		&raftv1.CreatePrincipal{Principal: &storagev1.Principal{Name: "alice"}},
		&raftv1.PutPolicy{Policy: &storagev1.Policy{Name: "readers", Document: policyDoc}},
	}
}

func mustHash(t *testing.T, s *storage.Store) storage.StateHash {
	t.Helper()
	h, err := s.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The same state hashes the same whatever the batches it was applied in;
// any difference, even one tag, changes the hash.
func TestStateHashDeterministic(t *testing.T) {
	arn := arnOf("db", "AbCdEf")
	ops := history(arn)
	batched := newFixture(t)
	batched.batch(time.Minute, ops...)
	each := newFixture(t)
	for i, op := range ops {
		each.ok(time.Minute+time.Duration(i)*time.Second, op)
	}
	if mustHash(t, batched.store) != mustHash(t, each.store) {
		t.Fatal("the same commands applied in one batch and one by one hash differently")
	}
	if again := mustHash(t, each.store); again != mustHash(t, each.store) {
		t.Fatal("hashing the same state twice gives two hashes")
	}
	each.ok(time.Hour, &raftv1.TagResource{Arn: arn, Tags: tags("env", "prod")})
	if mustHash(t, batched.store) == mustHash(t, each.store) {
		t.Fatal("a store with one more tag hashes the same")
	}
	// The same command at another index leaves another applied index and
	// so another state.
	shifted := newFixture(t)
	shifted.index = 1
	shifted.batch(time.Minute, ops...)
	if mustHash(t, batched.store) == mustHash(t, shifted.store) {
		t.Fatal("states at different applied indexes hash the same")
	}
}

// A snapshot restored into another store, one that held other state
// before, hashes the same as the store it was taken from.
func TestStateHashAfterRestore(t *testing.T) {
	arn := arnOf("db", "AbCdEf")
	src := newFixture(t)
	src.batch(time.Minute, history(arn)...)
	var buf bytes.Buffer
	sn, err := src.store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()

	dst := newFixture(t)
	for i := range 50 {
		dst.ok(time.Duration(i)*time.Second, createWithValue("tmp-"+string(rune('a'+i%26))+string(rune('a'+i/26)), "ZzZzZz", i+10, "filler"))
	}
	if err := dst.store.Restore(bytes.NewReader(buf.Bytes()), 0); err != nil {
		t.Fatal(err)
	}
	if mustHash(t, dst.store) != mustHash(t, src.store) {
		t.Fatal("a restored snapshot hashes differently from its source")
	}
	if dst.store.ClusterID() != src.store.ClusterID() {
		t.Fatalf("restored cluster id %q, want %q", dst.store.ClusterID(), src.store.ClusterID())
	}
}

// A CheckState entry in the middle of a batch: the checkpoint holds the
// state as of that entry, and the rest of the batch applies after it.
func TestCheckpointMidBatch(t *testing.T) {
	arn := arnOf("db", "AbCdEf")
	live := newFixture(t)
	var got []*storage.Checkpoint
	live.store.OnCheckpoint(func(cp *storage.Checkpoint) { got = append(got, cp) })
	before := []proto.Message{createWithValue("db", "AbCdEf", 1, "v1"), &raftv1.CheckState{}}
	after := []proto.Message{putOp(arn, 2, "v2"), &raftv1.TagResource{Arn: arn, Tags: tags("a", "b")}}
	results := live.batch(time.Minute, append(append([]proto.Message{}, before...), after...)...)
	for i, r := range results {
		if r.Index != uint64(i+1) || r.Skipped {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if len(got) != 1 || got[0].Index != 2 {
		t.Fatalf("checkpoints %v, want one at index 2", got)
	}
	cp := got[0]
	hashAt, err := cp.Hash()
	cp.Release()
	if err != nil {
		t.Fatal(err)
	}
	// A store that applied only the entries up to the check, as one batch
	// at the same indexes and times, holds that state.
	ref := newFixture(t)
	ref.batch(time.Minute, before...)
	if hashAt != mustHash(t, ref.store) {
		t.Fatal("the checkpoint does not hold the state as of the CheckState entry")
	}
	if mustHash(t, live.store) == hashAt || live.store.AppliedIndex() != 4 {
		t.Fatalf("the rest of the batch did not apply after the checkpoint (applied %d)", live.store.AppliedIndex())
	}
	// A replayed CheckState (at or below the applied index) takes none.
	live.store.ApplyBatch([]storage.Entry{{Index: 2, Cmd: command(time.Minute, &raftv1.CheckState{})}})
	if len(got) != 1 {
		t.Fatalf("a skipped CheckState took a checkpoint")
	}
}

// The first cluster id wins and survives a reopen; a snapshot of another
// cluster is refused; one without an id keeps this store's; a stamped copy
// carries the id it was stamped with.
func TestClusterID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := storage.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: s}
	if s.ClusterID() != "" {
		t.Fatalf("new store has cluster id %q", s.ClusterID())
	}
	noID := snapshotOf(t, s)
	f.ok(0, &raftv1.InitCluster{ClusterId: "aaaa"})
	f.ok(time.Second, &raftv1.InitCluster{ClusterId: "bbbb"})
	if s.ClusterID() != "aaaa" {
		t.Fatalf("cluster id %q, want the first one, aaaa", s.ClusterID())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = storage.Open(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if s.ClusterID() != "aaaa" {
		t.Fatalf("after reopening: cluster id %q", s.ClusterID())
	}

	other := newFixture(t)
	other.ok(0, &raftv1.InitCluster{ClusterId: "cccc"})
	err = s.Restore(bytes.NewReader(snapshotOf(t, other.store)), 0)
	if !errors.Is(err, storage.ErrClusterMismatch) {
		t.Fatalf("restore of another cluster's snapshot: %v, want ErrClusterMismatch", err)
	}
	if s.ClusterID() != "aaaa" {
		t.Fatalf("after a refused restore: cluster id %q", s.ClusterID())
	}
	if err := s.Restore(bytes.NewReader(noID), 0); err != nil {
		t.Fatal(err)
	}
	if s.ClusterID() != "aaaa" {
		t.Fatalf("a snapshot without an id took the id away: %q", s.ClusterID())
	}

	staged, size, err := storage.StampClusterID(bytes.NewReader(snapshotOf(t, other.store)), t.TempDir(), "aaaa")
	if err != nil {
		t.Fatal(err)
	}
	defer storage.RemoveStaged(staged)
	stamped, err := io.ReadAll(staged)
	if err != nil || int64(len(stamped)) != size {
		t.Fatalf("read %d of %d stamped bytes: %v", len(stamped), size, err)
	}
	if err := s.Restore(bytes.NewReader(stamped), 0); err != nil {
		t.Fatalf("restore of the stamped snapshot: %v", err)
	}
	if s.ClusterID() != "aaaa" {
		t.Fatalf("after the stamped restore: cluster id %q", s.ClusterID())
	}
	if _, _, err := storage.StampClusterID(bytes.NewReader([]byte("not a database")), t.TempDir(), "aaaa"); !errors.Is(err, storage.ErrBadSnapshot) {
		t.Fatalf("stamping garbage: %v, want ErrBadSnapshot", err)
	}
}

// snapshotOf is a snapshot of s's state, as Raft would ship it.
func snapshotOf(t *testing.T, s *storage.Store) []byte {
	t.Helper()
	b, _ := snapshotBytes(t, s)
	return b
}
