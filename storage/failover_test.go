package storage_test

import (
	"testing"
	"time"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// divergeAndFailBack brings primary secret arn (replicated from p to r and
// shipped) through a failover and back: p accepts vid(2) that never ships,
// r promotes its replica, p hears from r and keeps vid(2) as diverged, and p
// promotes its copy again. p is then the primary, holding vid(2) under
// COFFER_DIVERGED_eu-west-1.
func divergeAndFailBack(t testing.TB, p, r *fixture, arn string) {
	t.Helper()
	p.ok(3*time.Minute, putOp(arn, 2, "unshipped"))
	r.ok(4*time.Minute, &raftv1.PromoteReplica{Arn: storage.WithRegion(arn, dest), Region: dest,
		Replicas: []*storagev1.ReplicaRegionConfig{{Region: region}}})
	b, err := r.store.FeedAfter(region, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	p.ok(5*time.Minute, &raftv1.ApplyReplicaChanges{SourceRegion: dest, ThroughSeq: b.Through, Changes: b.Entries, Region: region})
	p.ok(6*time.Minute, &raftv1.PromoteReplica{Arn: arn, Region: region, Replicas: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	wantLabels(t, p.secret("db"), L(1, "AWSCURRENT", 2, "COFFER_DIVERGED_eu-west-1"))
}

// TestFenceRefusesPrimaryWrites: a fenced region refuses writes to its
// primary secrets and new secrets, and promotions; its replicas keep
// following their primary; lifting the fence lets writes in again.
func TestFenceRefusesPrimaryWrites(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("db", "AbCdEf")
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	ship(t, p, r, 2*time.Second)

	p.ok(3*time.Second, &raftv1.SetRegionFence{Fenced: true, Reason: "drill", Principal: "arn:coffer:iam::root"})
	c, err := p.store.RegionControl()
	if err != nil || !c.GetFenced() || c.GetFenceReason() != "drill" || c.GetFencedBy() != "arn:coffer:iam::root" {
		t.Fatalf("region control %v %v", c, err)
	}
	wantTime(t, "fenced date", c.GetFencedDate(), base.Add(3*time.Second))
	p.fails(4*time.Second, putOp(arn, 2, "v2"), storage.ErrRegionFenced, "This region is fenced (drill) and refuses writes to its primary secrets; retry later, or in the region that took over.")
	p.fails(4*time.Second, createWithValue("other", "OtHeR1", 5, "x"), storage.ErrRegionFenced, "")
	p.fails(4*time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Remove: []string{dest}}, storage.ErrRegionFenced, "")
	p.fails(4*time.Second, &raftv1.TagResource{Arn: arn, Tags: tags("k", "v")}, storage.ErrRegionFenced, "")

	// A fenced replica region still applies what its primary ships, and
	// refuses to take a secret over.
	r.ok(5*time.Second, &raftv1.SetRegionFence{Fenced: true})
	p.ok(5*time.Second, &raftv1.SetRegionFence{Fenced: false})
	if c, _ := p.store.RegionControl(); c.GetFenced() || c.GetFencedDate() != nil {
		t.Fatalf("after unfence: %v", c)
	}
	p.ok(6*time.Second, putOp(arn, 2, "v2"))
	ship(t, p, r, 7*time.Second)
	if v := r.value("db", "", "AWSCURRENT"); v.Version.GetVersionId() != vid(2) {
		t.Fatalf("fenced replica's current version %s", v.Version.GetVersionId())
	}
	r.fails(8*time.Second, &raftv1.PromoteReplica{Arn: storage.WithRegion(arn, dest), Region: dest}, storage.ErrRegionFenced, "")
}

// TestSwitchoverRefusesHandedOverSecrets: during a switchover to dest the
// secrets replicating there refuse writes, naming dest; others do not; a
// second target is refused until the first switchover ends.
func TestSwitchoverRefusesHandedOverSecrets(t *testing.T) {
	p, r := primaryAndReplica(t)
	pair(p, "us-west-2")
	arn := arnOf("db", "AbCdEf")
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(0, createWithValue("local", "LoCaL1", 5, "x"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	ship(t, p, r, 2*time.Second)

	p.fails(3*time.Second, &raftv1.SetSwitchover{ToRegion: "sa-east-1"}, storage.ErrInvalidParameter, "Region sa-east-1 is not paired with this region.")
	p.ok(3*time.Second, &raftv1.SetSwitchover{ToRegion: dest})
	p.ok(3*time.Second, &raftv1.SetSwitchover{ToRegion: dest}) // a retried begin
	p.fails(3*time.Second, &raftv1.SetSwitchover{ToRegion: "us-west-2"}, storage.ErrInvalidParameter,
		"A switchover to ap-south-1 is already in progress; complete or abort it first.")
	p.fails(4*time.Second, putOp(arn, 2, "v2"), storage.ErrSwitchingOver,
		"Secret db is being handed over to region ap-south-1 by a planned switchover; retry, and call region ap-south-1 once it completes.")
	p.ok(4*time.Second, putOp(arnOf("local", "LoCaL1"), 6, "y"))
	p.ok(4*time.Second, createWithValue("new", "NeW123", 7, "z"))
	p.fails(4*time.Second, &raftv1.SetReplicas{Arn: arnOf("new", "NeW123"), Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}},
		storage.ErrSwitchingOver, "")
	p.ok(4*time.Second, &raftv1.SetReplicas{Arn: arnOf("new", "NeW123"), Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: "us-west-2"}}})

	p.ok(5*time.Second, &raftv1.SetSwitchover{})
	p.ok(6*time.Second, putOp(arn, 2, "v2"))
}

// TestResolveDiverged: adopting a diverged version makes it AWSCURRENT and
// drops its diverged label; discarding deletes it; neither applies to a
// version without the label.
func TestResolveDiverged(t *testing.T) {
	for _, adopt := range []bool{true, false} {
		p, r := primaryAndReplica(t)
		arn := arnOf("db", "AbCdEf")
		p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
		p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
		ship(t, p, r, 2*time.Second)
		divergeAndFailBack(t, p, r, arn)

		p.fails(7*time.Minute, &raftv1.ResolveDiverged{Arn: arn, VersionId: vid(1), Adopt: adopt}, storage.ErrInvalidParameter,
			"Version "+vid(1)+" of db is not a diverged version (it has no COFFER_DIVERGED_ label).")
		p.fails(7*time.Minute, &raftv1.ResolveDiverged{Arn: arn, VersionId: vid(9), Adopt: adopt}, storage.ErrVersionNotFound, "")
		res := p.ok(7*time.Minute, &raftv1.ResolveDiverged{Arn: arn, VersionId: vid(2), Adopt: adopt})
		if res.VersionID != vid(2) {
			t.Fatalf("result version %s", res.VersionID)
		}
		if adopt {
			wantLabels(t, p.secret("db"), L(2, "AWSCURRENT", 1, "AWSPREVIOUS"))
			if v := p.value("db", "", "AWSCURRENT"); string(v.Value.GetCiphertext()) == "" {
				t.Fatal("adopted version has no value")
			}
		} else {
			wantLabels(t, p.secret("db"), L(1, "AWSCURRENT"))
			if len(p.secret("db").GetVersions()) != 1 {
				t.Fatalf("versions after discard: %d", len(p.secret("db").GetVersions()))
			}
		}
		// The resolution ships: the replica converges.
		b, _ := p.store.FeedAfter(dest, p.store.FeedAck(dest), 100)
		r.ok(8*time.Minute, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest})
		wantLabels(t, r.secret("db"), labels(p.secret("db")))
	}
}
