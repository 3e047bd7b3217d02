package storage_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

func TestTags(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	c := createOp("app", "AAAAAA")
	c.Tags = tags("env", "prod", "team", "core")
	f.ok(0, c)

	steps := []struct {
		op   proto.Message
		want []string // key=value pairs flattened
	}{
		{&raftv1.TagResource{Arn: arn, Tags: tags("owner", "ann")}, []string{"env", "prod", "team", "core", "owner", "ann"}},
		{&raftv1.TagResource{Arn: arn, Tags: tags("team", "infra", "cost", "")}, []string{"env", "prod", "team", "infra", "owner", "ann", "cost", ""}},
		{&raftv1.UntagResource{Arn: arn, TagKeys: []string{"env", "absent"}}, []string{"team", "infra", "owner", "ann", "cost", ""}},
		{&raftv1.UntagResource{Arn: arn, TagKeys: []string{"Team"}}, []string{"team", "infra", "owner", "ann", "cost", ""}},
		{&raftv1.UntagResource{Arn: arn}, []string{"team", "infra", "owner", "ann", "cost", ""}},
	}
	for i, st := range steps {
		at := time.Duration(i+1) * time.Hour
		f.ok(at, st.op)
		sec := f.secret(arn)
		wantProto(t, fmt.Sprintf("tags after step %d", i), &storagev1.Secret{Tags: sec.GetTags()}, &storagev1.Secret{Tags: tags(st.want...)})
		wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(at))
	}
}

func TestTagLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createOp("app", "AAAAAA"))
	var fifty []string
	for i := range storage.MaxTagsPerSecret {
		fifty = append(fifty, fmt.Sprintf("k%02d", i), "v")
	}
	f.ok(time.Hour, &raftv1.TagResource{Arn: arn, Tags: tags(fifty...)})
	f.fails(2*time.Hour, &raftv1.TagResource{Arn: arn, Tags: tags("k50", "v")}, storage.ErrLimitExceeded,
		"A secret can have at most 50 tags.")
	// A request that overwrites one key and adds one new key is refused whole.
	f.fails(2*time.Hour, &raftv1.TagResource{Arn: arn, Tags: tags("k00", "changed", "k50", "v")}, storage.ErrLimitExceeded, "")
	// Overwriting at the limit is fine.
	f.ok(3*time.Hour, &raftv1.TagResource{Arn: arn, Tags: tags("k00", "changed")})
	if got := f.secret(arn).GetTags(); len(got) != 50 || got[0].GetValue() != "changed" {
		t.Fatalf("tags = %v, want 50 with k00=changed", got)
	}
}

func TestResourcePolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createOp("app", "AAAAAA"))
	if f.secret(arn).ResourcePolicy != nil {
		t.Fatal("a new secret has a policy")
	}
	p1, p2 := `{"Version":"2012-10-17","Statement":[]}`, `{"Version":"2012-10-17","Statement":[{"Effect":"Deny"}]}`
	f.ok(time.Hour, &raftv1.PutResourcePolicy{Arn: arn, ResourcePolicy: p1})
	if got := f.secret(arn); got.ResourcePolicy == nil || got.GetResourcePolicy() != p1 {
		t.Fatalf("policy = %v, want %s", got.ResourcePolicy, p1)
	}
	wantTime(t, "LastChangedDate", f.secret(arn).GetLastChangedDate(), base.Add(time.Hour))
	f.ok(2*time.Hour, &raftv1.PutResourcePolicy{Arn: arn, ResourcePolicy: p2})
	if got := f.secret(arn).GetResourcePolicy(); got != p2 {
		t.Fatalf("policy = %s, want %s", got, p2)
	}
	f.ok(3*time.Hour, &raftv1.DeleteResourcePolicy{Arn: arn})
	sec := f.secret(arn)
	if sec.ResourcePolicy != nil {
		t.Fatalf("policy = %q after delete, want none", sec.GetResourcePolicy())
	}
	wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(3*time.Hour))
	// Deleting an absent policy succeeds and changes nothing.
	f.ok(4*time.Hour, &raftv1.DeleteResourcePolicy{Arn: arn})
	wantTime(t, "LastChangedDate", f.secret(arn).GetLastChangedDate(), base.Add(3*time.Hour))
}

func TestRecordAccess(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn, other := arnOf("app", "AAAAAA"), arnOf("other", "OOOOOO")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, putOp(arn, 2, "b"))
	f.ok(2*time.Hour, createWithValue("other", "OOOOOO", 7, "o"))
	changed := f.secret(arn).GetLastChangedDate().AsTime()

	midnight := func(days int) time.Time {
		y, m, d := base.Date()
		return time.Date(y, m, d+days, 0, 0, 0, 0, time.UTC)
	}
	access := func(entries ...*raftv1.AccessEntry) *raftv1.RecordAccess {
		return &raftv1.RecordAccess{Entries: entries}
	}
	entry := func(arn string, day time.Time, versions ...int) *raftv1.AccessEntry {
		e := &raftv1.AccessEntry{Arn: arn, Day: timestamppb.New(day)}
		for _, v := range versions {
			e.VersionIds = append(e.VersionIds, vid(v))
		}
		return e
	}
	type dates struct{ secret, v1, v2 time.Time } // zero: unset
	check := func(step string, want dates) {
		t.Helper()
		sec := f.secret(arn)
		for _, c := range []struct {
			what string
			got  *timestamppb.Timestamp
			want time.Time
		}{
			{"secret", sec.GetLastAccessedDate(), want.secret},
			{"version 1", sec.GetVersions()[0].GetLastAccessedDate(), want.v1},
			{"version 2", sec.GetVersions()[1].GetLastAccessedDate(), want.v2},
		} {
			if c.want.IsZero() {
				wantUnset(t, step+": "+c.what+" LastAccessedDate", c.got)
			} else {
				wantTime(t, step+": "+c.what+" LastAccessedDate", c.got, c.want)
			}
		}
		wantTime(t, step+": LastChangedDate", sec.GetLastChangedDate(), changed)
	}

	// A read in the afternoon is recorded as that day's midnight.
	f.ok(3*day, access(entry(arn, midnight(2).Add(15*time.Hour+30*time.Minute), 2)))
	check("first read", dates{secret: midnight(2), v2: midnight(2)})

	// An earlier day arriving late never moves a date backwards, but fills
	// in a version that had none.
	f.ok(3*day, access(entry(arn, midnight(1), 1, 2)))
	check("late entry", dates{secret: midnight(2), v1: midnight(1), v2: midnight(2)})

	// A later day moves the secret and the versions named, and nothing else.
	f.ok(6*day, access(entry(arn, midnight(5).Add(time.Second), 1)))
	check("later read", dates{secret: midnight(5), v1: midnight(5), v2: midnight(2)})

	// Entries for unknown secrets, wrong suffixes, unknown versions or no
	// day are ignored; the valid entry beside them is still recorded.
	f.ok(7*day, access(
		entry(arnOf("gone", "GGGGGG"), midnight(6), 1),
		entry(arnOf("app", "BADBAD"), midnight(6), 1),
		entry(arn, midnight(6), 99),
		&raftv1.AccessEntry{Arn: arn, VersionIds: []string{vid(2)}},
		entry(other, midnight(6), 7),
	))
	check("ignored entries", dates{secret: midnight(6), v1: midnight(5), v2: midnight(2)})
	o := f.secret(other)
	wantTime(t, "other LastAccessedDate", o.GetLastAccessedDate(), midnight(6))
	wantTime(t, "other version LastAccessedDate", o.GetVersions()[0].GetLastAccessedDate(), midnight(6))
	if got := allNames(t, f.store); !slices.Equal(got, []string{"app", "other"}) {
		t.Fatalf("Secrets = %v: RecordAccess created a record", got)
	}

	// Recording on a secret scheduled for deletion is harmless.
	f.ok(8*day, deleteOp(arn, 7))
	changed = base.Add(8 * day)
	f.ok(9*day, access(entry(arn, midnight(9), 2)))
	check("deleted secret", dates{secret: midnight(9), v1: midnight(5), v2: midnight(9)})
}
