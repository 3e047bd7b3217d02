package storage_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// The fixtures' region (eu-west-1) is the primary; dest is a replica region.
const dest = "ap-south-1"

// pair records peers as paired regions of f (only paired regions are fed).
func pair(f *fixture, peers ...string) {
	f.t.Helper()
	for _, p := range peers {
		f.ok(0, &raftv1.PairRegion{Peer: &storagev1.RegionPeer{Region: p}})
	}
}

// primaryAndReplica are the fixtures' primary region (eu-west-1) and a
// replica region (dest), paired both ways.
func primaryAndReplica(t testing.TB) (p, r *fixture) {
	p, r = newFixture(t), newFixture(t)
	pair(p, dest)
	pair(r, region)
	return p, r
}

// ship moves dest's unacknowledged feed from primary to replica the way the
// shipper does (minus re-wrapping, which is not storage's job) and
// acknowledges it; it returns the batch shipped.
func ship(t *testing.T, primary, replica *fixture, at time.Duration) *storage.FeedBatch {
	t.Helper()
	b, err := primary.store.FeedAfter(dest, primary.store.FeedAck(dest), 100)
	if err != nil {
		t.Fatal(err)
	}
	replica.ok(at, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest})
	primary.ok(at, &raftv1.AckFeed{Destination: dest, Seq: b.Through})
	return b
}

func TestReplicaFollowsPrimary(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("db", "AbCdEf")
	replicaARN := storage.WithRegion(arn, dest)
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest, KmsKeyId: "alias/dest"}}})
	p.ok(2*time.Second, putOp(arn, 2, "v2"))
	p.ok(3*time.Second, &raftv1.TagResource{Arn: arn, Tags: tags("team", "db")})
	p.ok(4*time.Second, moveOp(arn, "AWSCURRENT", 1, 2))

	b := ship(t, p, r, 5*time.Second)
	if len(b.Entries) != 4 || b.Through != 4 {
		t.Fatalf("shipped %d entries through %d, want 4 through 4", len(b.Entries), b.Through)
	}
	if n := p.store.FeedLength(); n != 0 {
		t.Fatalf("feed keeps %d entries after every destination acknowledged, want 0", n)
	}
	rep := r.secret("db")
	if rep.GetArn() != replicaARN || !rep.GetReplica() || rep.GetPrimaryRegion() != region || rep.GetKmsKeyId() != "alias/dest" {
		t.Fatalf("replica = arn %s replica %v primary %s key %s", rep.GetArn(), rep.GetReplica(), rep.GetPrimaryRegion(), rep.GetKmsKeyId())
	}
	if storage.ValueARN(rep) != arn {
		t.Fatalf("replica value ARN = %s, want the primary's %s", storage.ValueARN(rep), arn)
	}
	wantLabels(t, rep, labels(p.secret("db")))
	wantProto(t, "tags", rep.GetTags()[0], p.secret("db").GetTags()[0])
	for _, id := range []int{1, 2} {
		v := r.value(replicaARN, vid(id), "")
		if string(v.Value.GetCiphertext()) != string(p.value(arn, vid(id), "").Value.GetCiphertext()) {
			t.Fatalf("version %d ciphertext differs on the replica", id)
		}
	}

	// Re-delivery of the same batch changes nothing.
	before := dump(t, r.store)
	r.ok(6*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest})
	after := dump(t, r.store)
	after.applied = before.applied
	sameState(t, before, after)

	// A replica refuses writes, naming the primary region.
	r.fails(7*time.Second, putOp(replicaARN, 3, "x"), storage.ErrReplicaReadOnly,
		"Operation not permitted on a replica secret. Call must be made in primary secret's region: eu-west-1.")
	r.fails(7*time.Second, forceDeleteOp(replicaARN), storage.ErrReplicaReadOnly, "")

	// The destination's read days reach the primary's replica config; an
	// older day never moves it back.
	day := timestamppb.New(base.Add(day))
	p.ok(7*time.Second, &raftv1.AckFeed{Destination: dest, Seq: b.Through, Accessed: []*raftv1.ReplicaAccessDay{{Name: "db", Day: day}}})
	p.ok(7*time.Second, &raftv1.AckFeed{Destination: dest, Seq: b.Through, Accessed: []*raftv1.ReplicaAccessDay{{Name: "db", Day: timestamppb.New(base)}}})
	wantTime(t, "replica LastAccessedDate", p.secret("db").GetReplicas()[0].GetLastAccessedDate(), day.AsTime())

	// Deletion follows.
	p.ok(8*time.Second, forceDeleteOp(arn))
	ship(t, p, r, 9*time.Second)
	if _, err := r.store.Secret("db"); err == nil {
		t.Fatal("replica still exists after the primary was deleted")
	}
}

func TestReplicaRefusesSameNamedSecretUnlessForced(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("app", "AAAAAA")
	p.ok(0, createWithValue("app", "AAAAAA", 1, "v1"))
	r.ok(0, &raftv1.CreateSecret{Name: "app", Arn: storage.WithRegion(arnOf("app", "BBBBBB"), dest), PrimaryRegion: dest})
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	ship(t, p, r, 2*time.Second)
	if msg := r.store.ReplicaRejection(region, "app"); msg == "" {
		t.Fatal("a same-named secret in the destination was overwritten without ForceOverwriteReplicaSecret")
	}
	p.ok(3*time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Remove: []string{dest}})
	p.ok(4*time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest, ForceOverwrite: true}}})
	ship(t, p, r, 5*time.Second)
	// The destination never consented: its own primary stays.
	if got := r.secret("app"); got.GetReplica() || got.GetArn() != storage.WithRegion(arnOf("app", "BBBBBB"), dest) {
		t.Fatalf("a forced overwrite without the destination's consent left %s (replica %v)", got.GetArn(), got.GetReplica())
	}
	if msg := r.store.ReplicaRejection(region, "app"); !strings.Contains(msg, "does not accept overwrites") {
		t.Fatalf("rejection %q, want one naming accept_overwrite", msg)
	}
	r.ok(6*time.Second, &raftv1.SetPairingOptions{Region: region, AcceptOverwrite: true})
	p.ok(7*time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Remove: []string{dest}})
	p.ok(7*time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest, ForceOverwrite: true}}})
	ship(t, p, r, 8*time.Second)
	if got := r.secret("app"); !got.GetReplica() || got.GetArn() != storage.WithRegion(arn, dest) {
		t.Fatalf("forced overwrite with consent left %s (replica %v)", got.GetArn(), got.GetReplica())
	}
}

// TestFailbackKeepsDivergedVersions: the replica region promotes while the
// primary is cut off and still takes a write; when the old primary hears
// from the new one, the higher epoch wins and the unshipped write is kept.
func TestFailbackKeepsDivergedVersions(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("db", "AbCdEf")
	replicaARN := storage.WithRegion(arn, dest)
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	ship(t, p, r, 2*time.Second)

	p.ok(3*time.Second, putOp(arn, 2, "unshipped")) // never reaches dest
	r.ok(4*time.Second, &raftv1.PromoteReplica{Arn: replicaARN, Region: dest, Replicas: []*storagev1.ReplicaRegionConfig{{Region: region}}})
	r.ok(5*time.Second, putOp(replicaARN, 3, "after failover"))

	// The old primary's stale change is refused by the new primary.
	stale, _ := p.store.FeedAfter(dest, p.store.FeedAck(dest), 100)
	r.ok(6*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: stale.Through, Changes: stale.Entries, Region: dest})
	if r.store.ReplicaRejection(region, "db") == "" || r.secret("db").GetReplica() {
		t.Fatal("a lower-epoch change from the old primary was applied to the new primary")
	}

	// The new primary ships back to the old one.
	b, _ := r.store.FeedAfter(region, 0, 100)
	p.ok(7*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: dest, ThroughSeq: b.Through, Changes: b.Entries, Region: region})
	old := p.secret("db")
	if !old.GetReplica() || old.GetPrimaryRegion() != dest || old.GetEpoch() != 1 {
		t.Fatalf("old primary: replica %v primary %s epoch %d; want a replica of %s at epoch 1", old.GetReplica(), old.GetPrimaryRegion(), old.GetEpoch(), dest)
	}
	wantLabels(t, old, L(3, "AWSCURRENT", 1, "AWSPREVIOUS", 2, "COFFER_DIVERGED_eu-west-1"))
	if v := p.value(arn, "", "COFFER_DIVERGED_eu-west-1"); v.Version.GetVersionId() != vid(2) {
		t.Fatalf("diverged label on %s", v.Version.GetVersionId())
	}
	// A later change from the new primary keeps the diverged version.
	r.ok(8*time.Second, &raftv1.TagResource{Arn: replicaARN, Tags: tags("k", "v")})
	b, _ = r.store.FeedAfter(region, b.Through, 100)
	p.ok(9*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: dest, ThroughSeq: b.Through, Changes: b.Entries, Region: region})
	if !slices.ContainsFunc(p.secret("db").GetVersions(), func(v *storagev1.Version) bool { return v.GetVersionId() == vid(2) }) {
		t.Fatal("diverged version dropped by a later shipped change")
	}
}
