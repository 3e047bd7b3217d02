package storage_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	"github.com/cofferhq/coffer/storage"
)

func TestDeleteSecretWithRecoveryWindow(t *testing.T) {
	t.Parallel()
	for _, days := range []int64{7, 30} {
		t.Run(fmt.Sprint(days), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			arn := arnOf("app", "AAAAAA")
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			at := 3 * time.Hour
			res := f.ok(at, deleteOp(arn, days))
			deletion := base.Add(at + time.Duration(days)*day)
			if res.ARN != arn || res.Name != "app" || !res.DeletionDate.Equal(deletion) {
				t.Fatalf("result = %+v, want DeletionDate %v", res, deletion)
			}
			sec := f.secret("app") // DescribeSecret still works
			wantTime(t, "DeletedDate", sec.GetDeletedDate(), base.Add(at))
			wantTime(t, "DeletionDate", sec.GetDeletionDate(), deletion)
			wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(at))
			wantLabels(t, sec, L(1, "AWSCURRENT"))
			if ids := storage.StoredValueIDs(f.store, arn); !slices.Equal(ids, []string{vid(1)}) {
				t.Fatalf("stored values = %v, want the value kept for recovery", ids)
			}

			f.fails(at+time.Hour, deleteOp(arn, 7), storage.ErrMarkedForDeletion,
				"You can't perform this operation on the secret because it was already scheduled for deletion.")

			// RestoreSecret clears both dates and the value is readable again.
			res = f.ok(at+2*time.Hour, &raftv1.RestoreSecret{Arn: arn})
			if res.ARN != arn || res.Name != "app" {
				t.Fatalf("restore result = %+v", res)
			}
			sec = f.secret("app")
			wantUnset(t, "DeletedDate", sec.GetDeletedDate())
			wantUnset(t, "DeletionDate", sec.GetDeletionDate())
			wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(at+2*time.Hour))
			wantProto(t, "value", f.value("app", "", "").Value, sealed("a"))
		})
	}
}

func TestRestoreLiveSecret(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	before := dump(t, f.store)
	res := f.ok(time.Hour, &raftv1.RestoreSecret{Arn: arn})
	if res.Err != nil || res.ARN != arn {
		t.Fatalf("restore of a live secret = %+v", res)
	}
	after := dump(t, f.store)
	after.applied = before.applied
	sameState(t, after, before)
}

func TestForceDelete(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		scheduled bool
	}{
		{"live", false},
		{"scheduled for deletion", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			arn, other := arnOf("app", "AAAAAA"), arnOf("keep", "KKKKKK")
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			f.ok(time.Minute, putOp(arn, 2, "b"))
			f.ok(2*time.Minute, putOp(arn, 3, "c", "AWSPENDING"))
			f.ok(3*time.Minute, createWithValue("keep", "KKKKKK", 9, "k"))
			if tt.scheduled {
				f.ok(time.Hour, deleteOp(arn, 30))
			}
			res := f.ok(2*time.Hour, forceDeleteOp(arn))
			if res.ARN != arn || !res.DeletionDate.Equal(base.Add(2*time.Hour)) {
				t.Fatalf("result = %+v, want DeletionDate = the command time", res)
			}
			if got := allNames(t, f.store); !slices.Equal(got, []string{"keep"}) {
				t.Fatalf("Secrets = %v, want [keep]", got)
			}
			for _, ref := range []string{"app", arn} {
				_, err := f.store.Secret(ref)
				wantErr(t, err, storage.ErrSecretNotFound, msgNoARN)
			}
			if ids := storage.StoredValueIDs(f.store, arn); len(ids) != 0 {
				t.Fatalf("values left behind: %v", ids)
			}
			if ids := storage.StoredValueIDs(f.store, other); !slices.Equal(ids, []string{vid(9)}) {
				t.Fatalf("values of the other secret = %v, want [%s]", ids, vid(9))
			}
			f.fails(3*time.Hour, forceDeleteOp(arn), storage.ErrSecretNotFound, msgNoARN)
		})
	}
}

func TestPurgeSecret(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	deleted := time.Hour
	deletion := deleted + 7*day
	tests := []struct {
		name   string
		at     time.Duration
		delete bool
		gone   bool
	}{
		{"before the deletion date", deletion - time.Second, true, false},
		{"on the deletion date", deletion, true, true},
		{"after the deletion date", deletion + 3*day, true, true},
		{"live secret", deletion + 3*day, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			f.ok(time.Minute, putOp(arn, 2, "b"))
			if tt.delete {
				f.ok(deleted, deleteOp(arn, 7))
			}
			before := dump(t, f.store)
			res := f.ok(tt.at, &raftv1.PurgeSecret{Arn: arn})
			if res.ARN != arn {
				t.Fatalf("result = %+v", res)
			}
			if !tt.gone {
				after := dump(t, f.store)
				after.applied = before.applied
				sameState(t, after, before)
				return
			}
			if !res.DeletionDate.Equal(base.Add(deletion)) {
				t.Fatalf("DeletionDate = %v, want %v", res.DeletionDate, base.Add(deletion))
			}
			if got := allNames(t, f.store); len(got) != 0 {
				t.Fatalf("Secrets = %v after purge, want none", got)
			}
			if n := storage.StoredValueCount(f.store); n != 0 {
				t.Fatalf("%d values left after purge", n)
			}
			f.ok(tt.at+time.Minute, createWithValue("app", "BBBBBB", 3, "new"))
		})
	}
}

// TestPurgeAfterRestore: a purge proposed before a restore was applied finds
// the secret live and leaves it.
func TestPurgeAfterRestore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, deleteOp(arn, 7))
	f.ok(8*day, &raftv1.RestoreSecret{Arn: arn})
	f.ok(8*day+time.Second, &raftv1.PurgeSecret{Arn: arn})
	wantProto(t, "value", f.value("app", "", "").Value, sealed("a"))
}

func TestDeletedSecretRefusesChanges(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	ops := []proto.Message{
		&raftv1.TagResource{Arn: arn, Tags: tags("k", "new")},
		&raftv1.UntagResource{Arn: arn, TagKeys: []string{"k"}},
		&raftv1.PutResourcePolicy{Arn: arn, ResourcePolicy: `{"Version":"2012-10-17"}`},
		&raftv1.DeleteResourcePolicy{Arn: arn},
		putOp(arn, 2, "b"),
		&raftv1.UpdateSecret{Arn: arn, Description: proto.String("x")},
		moveOp(arn, "AWSCURRENT", 1, 1),
		moveOp(arn, "blue", 1, 0),
	}
	for _, op := range ops {
		t.Run(fmt.Sprintf("%T", op), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			c := createWithValue("app", "AAAAAA", 1, "a")
			c.Tags = tags("k", "v")
			f.ok(0, c)
			f.ok(time.Minute, &raftv1.PutResourcePolicy{Arn: arn, ResourcePolicy: "{}"})
			f.ok(time.Hour, deleteOp(arn, 7))
			f.fails(2*time.Hour, op, storage.ErrMarkedForDeletion, msgMarked)
		})
	}
}
