package storage_test

import (
	"testing"
	"time"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

// A CreateSecret without a value, retried with the same token, succeeds
// with the first answer; another token is still "already exists".
func TestCreateWithoutValueRetry(t *testing.T) {
	f := newFixture(t)
	op := createOp("novalue", "AbCdEf")
	op.ClientRequestToken = vid(1)
	first := f.ok(0, op)
	retry := createOp("novalue", "ZzZzZz") // a retry proposes a fresh suffix
	retry.ClientRequestToken = vid(1)
	again := f.ok(1, retry)
	if again.ARN != first.ARN || again.VersionID != "" {
		t.Fatalf("retry answered %+v, want ARN %s", again, first.ARN)
	}
	other := createOp("novalue", "QqQqQq")
	other.ClientRequestToken = vid(2)
	f.fails(2, other, storage.ErrSecretExists, "The operation failed because the secret novalue already exists.")
}

// A version-list token whose version was pruned is refused, not answered
// with an empty page.
func TestVersionTokenAfterLabelRemoved(t *testing.T) {
	f := newFixture(t)
	arn := f.ok(0, createWithValue("v", "AbCdEf", 1, "one")).ARN
	f.ok(1, putOp(arn, 2, "two", "A"))
	f.ok(2, putOp(arn, 3, "three", "B"))
	page, err := f.store.SecretVersions(arn, false, 1, "")
	if err != nil || page.NextToken == "" || page.Versions[0].GetVersionId() != vid(3) {
		t.Fatalf("first page: %+v %v", page, err)
	}
	// Version 3 loses its only label: now deprecated, hidden from the list.
	f.ok(3, &raftv1.UpdateVersionStage{Arn: arn, VersionStage: "B", RemoveFromVersionId: vid(3)})
	_, err = f.store.SecretVersions(arn, false, 1, page.NextToken)
	wantErr(t, err, storage.ErrInvalidNextToken, "")
}

// Moving AWSCURRENT puts AWSPREVIOUS on the old version; that version's
// label limit is checked too.
func TestPreviousRespectsLabelLimit(t *testing.T) {
	f := newFixture(t)
	arn := f.ok(0, createWithValue("lim", "AbCdEf", 1, "one")).ARN
	labels := []string{}
	for i := range storage.MaxStagesPerVersion - 1 {
		labels = append(labels, string(rune('a'+i)))
	}
	for i, l := range labels {
		f.ok(time.Duration(i+1), &raftv1.UpdateVersionStage{Arn: arn, VersionStage: l, MoveToVersionId: vid(1)})
	}
	f.ok(30, putOp(arn, 2, "two", "X"))
	// Version 1 has AWSCURRENT + 19 labels = 20; moving AWSCURRENT away
	// would give it AWSPREVIOUS as well (still 20), which is allowed.
	f.ok(31, moveOp(arn, storage.StageCurrent, 2, 1))
	// Now version 1 has AWSPREVIOUS + 19 = 20; adding one more must fail.
	f.fails(32, &raftv1.UpdateVersionStage{Arn: arn, VersionStage: "extra", MoveToVersionId: vid(1)}, storage.ErrLimitExceeded, "")
}

// Entries repeated inside one batch are applied once.
func TestBatchSkipsRepeatedIndex(t *testing.T) {
	s := openStore(t)
	c := command(0, createOp("dup", "AbCdEf"))
	res := s.ApplyBatch([]storage.Entry{{Index: 1, Cmd: c}, {Index: 1, Cmd: c}})
	if res[0].Err != nil || !res[1].Skipped {
		t.Fatalf("results %+v %+v", res[0], res[1])
	}
}
