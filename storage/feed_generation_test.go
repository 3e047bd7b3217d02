package storage_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// restoreStamped restores snap into f the way an operator's restore does:
// stamped with a new feed generation.
func restoreStamped(t *testing.T, f *fixture, snap []byte, generation string) {
	t.Helper()
	staged, _, err := storage.StampRestore(bytes.NewReader(snap), t.TempDir(), "", generation)
	if err != nil {
		t.Fatal(err)
	}
	defer storage.RemoveStaged(staged)
	b, err := io.ReadAll(staged)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Restore(bytes.NewReader(b), 0); err != nil {
		t.Fatal(err)
	}
}

// TestRestoredFeedStartsANewGeneration (issue 13, item 2): the primary
// restores an older snapshot while its replica region applied more of the
// feed. The restored feed gets a new generation and forgets every
// acknowledgement; an acknowledgement is capped at the feed's position and
// counts only in its generation; the destination refuses a batch of another
// generation and a batch leaving a gap; a reset ships full copies as a
// resync, which the destination takes. A restore of the destination marks
// what it applied from each source as of another generation.
func TestRestoredFeedStartsANewGeneration(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("db", "AbCdEf")
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	ship(t, p, r, 2*time.Second)
	yesterday := snapshotOf(t, p.store)
	replicaYesterday := snapshotOf(t, r.store)

	p.ok(3*time.Second, putOp(arn, 2, "v2"))
	p.ok(4*time.Second, putOp(arn, 3, "v3"))
	ship(t, p, r, 5*time.Second)
	ahead := r.store.ReplicaPosition(region)

	restoreStamped(t, p, yesterday, "g2")
	if g := p.store.FeedGeneration(); g != "g2" {
		t.Fatalf("restored feed generation %q, want g2", g)
	}
	if a := p.store.FeedAck(dest); a != 0 {
		t.Fatalf("the restored feed keeps acknowledgement %d; no destination acknowledged this generation", a)
	}
	p.ok(6*time.Second, putOp(arn, 4, "v4"))
	seq := storage.FeedSeq(p.store)
	if seq > ahead {
		t.Fatalf("test setup: the restored feed (%d) should reuse positions the replica applied (%d)", seq, ahead)
	}

	// The destination's answer in the old generation, or beyond the feed.
	p.ok(7*time.Second, &raftv1.AckFeed{Destination: dest, Seq: ahead})
	if a := p.store.FeedAck(dest); a != 0 {
		t.Fatalf("an acknowledgement of another generation moved the position to %d", a)
	}
	p.ok(7*time.Second, &raftv1.AckFeed{Destination: dest, Seq: 1000, Generation: "g2"})
	if a := p.store.FeedAck(dest); a != seq {
		t.Fatalf("acknowledgement 1000 recorded as %d, want it capped at the feed's position %d", a, seq)
	}

	// The destination refuses another generation, and a gap.
	b, err := p.store.FeedAfter(dest, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	r.ok(8*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest, Generation: "g2"})
	if pos := r.store.ReplicaPosition(region); pos != ahead || r.value("db", "", "AWSCURRENT").Version.GetVersionId() != vid(3) {
		t.Fatalf("a batch of another generation was applied: position %d (was %d)", pos, ahead)
	}
	r.ok(8*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: ahead + 10, After: ahead + 5, Region: dest})
	if pos := r.store.ReplicaPosition(region); pos != ahead {
		t.Fatalf("a batch after a gap moved the position to %d (was %d)", pos, ahead)
	}

	// The source resets: full copies, shipped as a resync.
	p.ok(9*time.Second, &raftv1.ResetFeed{Destination: dest, Generation: "g2"})
	base, ok := p.store.FeedResync(dest)
	if !ok || base != seq || p.store.FeedAck(dest) != base {
		t.Fatalf("reset: resync at %d (%v), acknowledged %d; want both at %d", base, ok, p.store.FeedAck(dest), seq)
	}
	b, err = p.store.FeedAfter(dest, base, 100)
	if err != nil || len(b.Entries) != 1 || len(b.Entries[0].GetValues()) != 2 {
		t.Fatalf("reset fed %v (%v), want one full copy of db with its 2 values (v1, v4)", entryNames(b.Entries), err)
	}
	r.ok(10*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest,
		Generation: "g2", After: base, Resync: true})
	if pos, g := r.store.ReplicaPosition(region), r.store.ReplicaGeneration(region); pos != b.Through || g != "g2" {
		t.Fatalf("after the resync the replica region is at %d of generation %q, want %d of g2", pos, g, b.Through)
	}
	if v := r.value("db", "", "AWSCURRENT").Version.GetVersionId(); v != vid(4) {
		t.Fatalf("after the resync the replica's AWSCURRENT is %s, want %s", v, vid(4))
	}

	// The destination restores its own backup: what it applied from the
	// source no longer matches any generation of the source.
	restoreStamped(t, r, replicaYesterday, "g3")
	if g := r.store.ReplicaGeneration(region); g == "" || g == "g2" {
		t.Fatalf("after its restore the replica region holds generation %q of the source", g)
	}
}
