package storage_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// FuzzApplyReplicaChanges feeds arbitrary shipments from a paired region to
// a replica region's state machine. Whatever a peer sends, Apply must
// answer with a result — accepted, or refused as a domain error — and never
// panic, since a panic there is every node of the region crashing on the
// same log entry, again on every replay.
func FuzzApplyReplicaChanges(f *testing.F) {
	p, _ := primaryAndReplica(f)
	arn := arnOf("db", "AbCdEf")
	p.ok(0, createWithValue("db", "AbCdEf", 1, "v1"))
	p.ok(time.Second, &raftv1.SetReplicas{Arn: arn, Region: region, Add: []*storagev1.ReplicaRegionConfig{{Region: dest}}})
	p.ok(2*time.Second, putOp(arn, 2, "v2"))
	b, err := p.store.FeedAfter(dest, 0, 100)
	if err != nil {
		f.Fatal(err)
	}
	seed, err := proto.Marshal(&raftv1.ApplyReplicaChanges{SourceRegion: region, ThroughSeq: b.Through, Changes: b.Entries, Region: dest})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, raw []byte) {
		op := &raftv1.ApplyReplicaChanges{}
		if proto.Unmarshal(raw, op) != nil {
			return // the region port decodes before anything reaches the log
		}
		r := newFixture(t)
		pair(r, region)
		r.ok(0, &raftv1.CreateSecret{Name: "victim", Arn: arnOf("victim", "VVVVVV"), PrimaryRegion: region, Version: newVersion(1, "mine"), ClientRequestToken: vid(1)})
		// Twice: a replayed entry must be as harmless as the first.
		r.apply(time.Second, op)
		r.apply(2*time.Second, op)
		if r.secret("victim") == nil {
			t.Fatal("a shipment removed a local primary secret")
		}
	})
}
