package storage_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// TestForgedShipmentsAreRefused: a paired region's batch that breaks a rule
// of shipped changes is refused whole, by ValidateShipment (which the
// receiving node runs before proposing) and by Apply itself (a batch
// already in the log): a domain error, nothing written, no panic — and the
// region keeps applying, including a valid batch afterwards. Before the
// fix, a record named differently from its change overwrote the local
// secret of that name, and a name bbolt cannot store panicked every node.
func TestForgedShipmentsAreRefused(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("db", "AbCdEf")
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	b, err := p.store.FeedAfter(dest, 0, 100)
	if err != nil || len(b.Entries) != 1 || b.Entries[0].GetSecret() == nil || len(b.Entries[0].GetValues()) != 1 {
		t.Fatalf("feed for %s: %v, %v", dest, b, err)
	}
	valid := &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest}

	// The replica region's own primary, which a forged record must not touch.
	victimARN := storage.WithRegion(arnOf("victim", "VVVVVV"), dest)
	r.ok(0, &raftv1.CreateSecret{Name: "victim", Arn: victimARN, PrimaryRegion: dest, Version: newVersion(1, "mine"), ClientRequestToken: vid(1)})

	rename := func(ch *storagev1.ChangeFeedEntry, name string) {
		ch.Name, ch.Arn = name, arnOf(name, "AbCdEf")
		ch.Secret.Name, ch.Secret.Arn = ch.Name, ch.Arn
	}
	cases := []struct {
		name string
		edit func(op *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry)
	}{
		{"empty name", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) { rename(ch, "") }},
		{"name over 512 characters", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			rename(ch, strings.Repeat("n", storage.MaxNameLength+1))
		}},
		{"name bbolt cannot store as a key", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			rename(ch, strings.Repeat("n", 40000))
		}},
		{"name with a space", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) { rename(ch, "d b") }},
		{"record of another secret", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.Name = "victim"
		}},
		{"record under another ARN", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.Arn = arnOf("db", "ZZZZZZ")
		}},
		{"ARN in another region", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Arn = storage.WithRegion(ch.Arn, "us-west-2")
			ch.Secret.Arn = ch.Arn
		}},
		{"ARN of another name", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Arn = arnOf("victim", "AbCdEf")
			ch.Secret.Arn = ch.Arn
		}},
		{"partial ARN", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Arn = storage.ARNPrefix(partition, region, account) + "db"
			ch.Secret.Arn = ch.Arn
		}},
		{"primary region not the source", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.PrimaryRegion = "us-west-2"
		}},
		{"record shipped as a replica", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.Replica = true
		}},
		{"value ARN of another secret", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.ValueArn = victimARN
		}},
		{"value for a version the record lacks", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Values[0].VersionId = vid(99)
		}},
		{"value for a version that has none", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.Versions[0].Fingerprint = nil
		}},
		{"two values for one version", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Values = append(ch.Values, proto.CloneOf(ch.Values[0]))
		}},
		{"repeated version id", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.Versions = append(ch.Secret.Versions, proto.CloneOf(ch.Secret.Versions[0]))
		}},
		{"empty version id", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret.Versions[0].VersionId, ch.Values[0].VersionId = "", ""
		}},
		{"label on two versions", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			v := proto.CloneOf(ch.Secret.Versions[0])
			v.VersionId = vid(7)
			ch.Secret.Versions = append(ch.Secret.Versions, v)
		}},
		{"oversized ciphertext", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Values[0].Value.Ciphertext = make([]byte, 2*storage.MaxValueBytes)
		}},
		{"too many tags", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			for i := range storage.MaxTagsPerSecret + 1 {
				ch.Secret.Tags = append(ch.Secret.Tags, &cofferv1.Tag{Key: strings.Repeat("k", i+1)})
			}
		}},
		{"deletion carrying values", func(_ *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			ch.Secret = nil
		}},
		{"positions not increasing", func(op *raftv1.ApplyReplicaChanges, ch *storagev1.ChangeFeedEntry) {
			op.Changes = append(op.Changes, proto.CloneOf(ch))
		}},
		{"position past the batch's", func(op *raftv1.ApplyReplicaChanges, _ *storagev1.ChangeFeedEntry) {
			op.ThroughSeq = 0
		}},
		{"shipped to itself", func(op *raftv1.ApplyReplicaChanges, _ *storagev1.ChangeFeedEntry) {
			op.SourceRegion = dest
		}},
		{"invalid source region", func(op *raftv1.ApplyReplicaChanges, _ *storagev1.ChangeFeedEntry) {
			op.SourceRegion = ""
		}},
	}
	for i, tc := range cases {
		op := proto.CloneOf(valid)
		tc.edit(op, op.Changes[0])
		err := storage.ValidateShipment(op.GetRegion(), op.GetSourceRegion(), op.GetThroughSeq(), op.GetChanges())
		if !errors.Is(err, storage.ErrInvalidShipment) {
			t.Fatalf("%s: ValidateShipment = %v, want ErrInvalidShipment", tc.name, err)
		}
		if len(err.Error()) > 1000 {
			t.Fatalf("%s: error message of %d bytes", tc.name, len(err.Error()))
		}
		// Apply refuses it too, changing nothing, panicking never.
		r.fails(time.Duration(i+2)*time.Second, op, storage.ErrInvalidShipment, "")
		if pos := r.store.ReplicaPosition(region); pos != 0 {
			t.Fatalf("%s: a refused batch moved the position from %s to %d", tc.name, region, pos)
		}
	}
	if err := storage.ValidateShipment(dest, region, valid.GetThroughSeq(), valid.GetChanges()); err != nil {
		t.Fatalf("the valid batch: %v", err)
	}
	r.ok(time.Minute, valid)
	if got := r.secret("db"); !got.GetReplica() || got.GetArn() != storage.WithRegion(arn, dest) {
		t.Fatalf("after the refusals the valid batch left %s (replica %v)", got.GetArn(), got.GetReplica())
	}
	if v := r.value("victim", "", "AWSCURRENT"); v.Version.GetVersionId() != vid(1) || r.secret("victim").GetReplica() {
		t.Fatal("the replica region's own secret changed")
	}
}

// TestForcedOverwriteThatCannotApplyKeepsLocalSecret: a ForceOverwrite copy
// that is refused (a version arrives without its value) leaves the local
// same-named secret in place; it used to be removed before the refusal.
func TestForcedOverwriteThatCannotApplyKeepsLocalSecret(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("app", "AAAAAA")
	localARN := storage.WithRegion(arnOf("app", "BBBBBB"), dest)
	p.ok(0, createWithValue("app", "AAAAAA", 1, "v1"))
	r.ok(0, &raftv1.CreateSecret{Name: "app", Arn: localARN, PrimaryRegion: dest, Version: newVersion(1, "local"), ClientRequestToken: vid(1)})
	r.ok(0, &raftv1.SetPairingOptions{Region: region, AcceptOverwrite: true})
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest, ForceOverwrite: true}}})
	b, _ := p.store.FeedAfter(dest, 0, 100)
	b.Entries[0].Values = nil
	r.ok(2*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest})
	if msg := r.store.ReplicaRejection(region, "app"); !strings.Contains(msg, "without its value") {
		t.Fatalf("rejection %q", msg)
	}
	if got := r.secret("app"); got.GetArn() != localARN || got.GetReplica() {
		t.Fatalf("local secret became %s (replica %v)", got.GetArn(), got.GetReplica())
	}
	if v := r.value(localARN, vid(1), ""); string(v.Value.GetCiphertext()) != string(sealed("local").GetCiphertext()) {
		t.Fatal("the local secret's value changed")
	}
}

// TestReplicaIsNotPurgedOnItsOwnClock: a replica of a secret scheduled for
// deletion outlives its deletion date here (the region refuses to purge
// it), so a restore in the primary region that ships late restores it
// instead of finding it gone and failing; the primary's purge removes it.
func TestReplicaIsNotPurgedOnItsOwnClock(t *testing.T) {
	p, r := primaryAndReplica(t)
	arn := arnOf("db", "AbCdEf")
	replicaARN := storage.WithRegion(arn, dest)
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	p.ok(2*time.Second, deleteOp(arn, 7))
	ship(t, p, r, 3*time.Second)
	if r.secret("db").GetDeletionDate() == nil {
		t.Fatal("the scheduled deletion did not reach the replica")
	}

	// The link is cut: the primary's restore waits.
	p.ok(day, &raftv1.RestoreSecret{Arn: arn})
	r.fails(8*day, &raftv1.PurgeSecret{Arn: replicaARN}, storage.ErrReplicaReadOnly, "")

	ship(t, p, r, 9*day)
	got := r.secret("db")
	if got.GetDeletedDate() != nil || got.GetDeletionDate() != nil || !got.GetReplica() {
		t.Fatalf("replica after the restore shipped: deleted %v, replica %v", got.GetDeletedDate(), got.GetReplica())
	}
	if msg := r.store.ReplicaRejection(region, "db"); msg != "" {
		t.Fatalf("the restore was refused: %s", msg)
	}
	if v := r.value(replicaARN, vid(1), ""); v.Version.GetVersionId() != vid(1) {
		t.Fatal("replica value lost")
	}

	// The primary's own purge is what removes the replica.
	p.ok(10*day, deleteOp(arn, 7))
	p.ok(18*day, &raftv1.PurgeSecret{Arn: arn})
	ship(t, p, r, 18*day)
	if _, err := r.store.Secret("db"); !errors.Is(err, storage.ErrSecretNotFound) {
		t.Fatalf("replica after the primary's purge shipped: %v", err)
	}
}

// TestUnpairReleasesTheFeed: a destination that will never acknowledge
// holds the feed back until it is unpaired; then its entries are trimmed,
// nothing more is fed to it, its secrets report why, and pairing it again
// feeds it a full copy.
func TestUnpairReleasesTheFeed(t *testing.T) {
	const other = "us-west-2"
	p := newFixture(t)
	pair(p, dest, other)
	arn := arnOf("db", "AbCdEf")
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}, {Region: other}}})
	p.ok(2*time.Second, putOp(arn, 2, "v2"))
	ack := func(at time.Duration, to string) {
		t.Helper()
		b, err := p.store.FeedAfter(to, p.store.FeedAck(to), 100)
		if err != nil {
			t.Fatal(err)
		}
		p.ok(at, &raftv1.AckFeed{Destination: to, Seq: b.Through})
	}
	ack(3*time.Second, other)
	if n := p.store.FeedLength(); n != 2 {
		t.Fatalf("feed holds %d entries while %s has acknowledged none, want 2", n, dest)
	}

	p.ok(4*time.Second, &raftv1.UnpairRegion{Region: dest})
	if n := p.store.FeedLength(); n != 0 {
		t.Fatalf("feed holds %d entries after %s was unpaired, want 0", n, dest)
	}
	for _, c := range p.secret("db").GetReplicas() {
		if c.GetRegion() == dest && !strings.Contains(c.GetStatusMessage(), "no longer paired") {
			t.Fatalf("%s's replica status message %q", dest, c.GetStatusMessage())
		}
	}
	p.fails(5*time.Second, &raftv1.UnpairRegion{Region: dest}, storage.ErrInvalidParameter, "")
	p.ok(6*time.Second, putOp(arn, 3, "v3"))
	if b, _ := p.store.FeedAfter(dest, 0, 100); len(b.Entries) != 0 {
		t.Fatalf("%d entries fed to an unpaired region", len(b.Entries))
	}
	ack(7*time.Second, other)
	if n := p.store.FeedLength(); n != 0 {
		t.Fatalf("feed holds %d entries every paired region acknowledged", n)
	}

	// Paired again: one full copy, every version's value, message cleared.
	pair(p, dest)
	b, _ := p.store.FeedAfter(dest, 0, 100)
	if len(b.Entries) != 1 || len(b.Entries[0].GetValues()) != 3 {
		t.Fatalf("re-pairing fed %d entries (%v), want one full copy of 3 versions", len(b.Entries), b.Entries)
	}
	for _, c := range p.secret("db").GetReplicas() {
		if c.GetStatusMessage() != "" {
			t.Fatalf("%s's replica status message %q after re-pairing", c.GetRegion(), c.GetStatusMessage())
		}
	}
	r := newFixture(t)
	pair(r, region)
	r.ok(8*time.Second, &raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest})
	wantLabels(t, r.secret("db"), labels(p.secret("db")))

	// A malformed pairing is refused, not a panic.
	p.fails(9*time.Second, &raftv1.PairRegion{Peer: &storagev1.RegionPeer{}}, storage.ErrInvalidParameter, "")
}
