package storage_test

import (
	"testing"
	"time"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// A proposal applied twice (a forwarded write retried after its connection
// dropped) answers with its first result and changes nothing the second
// time — even for an operation that is not idempotent by itself.
func TestProposalAppliedOnce(t *testing.T) {
	f := newFixture(t)
	arn := f.ok(0, createWithValue("once", "AbCdEf", 1, "v")).ARN
	del := command(time.Minute, deleteOp(arn, 7))
	del.Header.ProposalId = "p-1"
	first := f.store.Apply(10, del)
	if first.Err != nil || first.DeletionDate.IsZero() {
		t.Fatalf("first: %+v", first)
	}
	before := dump(t, f.store)
	again := f.store.Apply(11, del)
	if again.Err != nil || !again.DeletionDate.Equal(first.DeletionDate) || again.Index != first.Index {
		t.Fatalf("retry answered %+v, want the first result %+v", again, first)
	}
	before.applied = 11 // the retry's log entry is applied, as a no-op
	sameState(t, dump(t, f.store), before)

	// Without a proposal id the same command is simply applied again.
	del.Header.ProposalId = ""
	if r := f.store.Apply(12, del); r.Err == nil {
		t.Fatalf("second delete without proposal id succeeded")
	}
}

// Remembered results expire by command time, the same on every replica.
func TestProposalMemoryExpires(t *testing.T) {
	f := newFixture(t)
	c := command(0, createOp("exp", "AbCdEf"))
	c.Header.ProposalId = "p-exp"
	if r := f.store.Apply(1, c); r.Err != nil {
		t.Fatal(r.Err)
	}
	// Another proposal much later expires the first record.
	later := command(storage.ProposalRetention+time.Minute, createOp("other", "AbCdEf"))
	later.Header.ProposalId = "p-later"
	if r := f.store.Apply(2, later); r.Err != nil {
		t.Fatal(r.Err)
	}
	retry := command(storage.ProposalRetention+2*time.Minute, &raftv1.CreateSecret{Name: "exp", Arn: arnOf("exp", "AbCdEf")})
	retry.Header.ProposalId = "p-exp"
	if r := f.store.Apply(3, retry); r.Err == nil {
		t.Fatalf("expired proposal was answered from memory: %+v", r)
	}
}
