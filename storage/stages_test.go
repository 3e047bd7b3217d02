package storage_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

func TestUpdateVersionStage(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	// Every case starts from:
	start := L(1, "AWSPREVIOUS", 2, "AWSCURRENT", 3, "AWSPENDING", 4, "blue")
	tests := []struct {
		name string
		op   *raftv1.UpdateVersionStage
		want map[string][]string // on success
		kind error               // on failure
		msg  string
	}{
		{
			name: "move AWSCURRENT, old current becomes AWSPREVIOUS",
			op:   moveOp(arn, "AWSCURRENT", 3, 2),
			want: L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT,AWSPENDING", 4, "blue"),
		},
		{
			name: "rollback onto the AWSPREVIOUS version",
			op:   moveOp(arn, "AWSCURRENT", 1, 2),
			want: L(1, "AWSCURRENT", 2, "AWSPREVIOUS", 3, "AWSPENDING", 4, "blue"),
		},
		{
			name: "move AWSCURRENT onto a version with a custom label",
			op:   moveOp(arn, "AWSCURRENT", 4, 2),
			want: L(1, "", 2, "AWSPREVIOUS", 3, "AWSPENDING", 4, "AWSCURRENT,blue"),
		},
		{
			name: "AWSCURRENT onto the version that has it",
			op:   moveOp(arn, "AWSCURRENT", 2, 0),
			want: start,
		},
		{
			name: "AWSCURRENT onto the version that has it, naming it",
			op:   moveOp(arn, "AWSCURRENT", 2, 2),
			want: start,
		},
		{
			name: "move AWSPENDING leaves AWSPREVIOUS alone",
			op:   moveOp(arn, "AWSPENDING", 1, 3),
			want: L(1, "AWSPENDING,AWSPREVIOUS", 2, "AWSCURRENT", 3, "", 4, "blue"),
		},
		{
			name: "move AWSPREVIOUS by hand",
			op:   moveOp(arn, "AWSPREVIOUS", 4, 1),
			want: L(1, "", 2, "AWSCURRENT", 3, "AWSPENDING", 4, "AWSPREVIOUS,blue"),
		},
		{
			name: "remove a custom label",
			op:   moveOp(arn, "blue", 0, 4),
			want: L(1, "AWSPREVIOUS", 2, "AWSCURRENT", 3, "AWSPENDING", 4, ""),
		},
		{
			name: "remove AWSPENDING",
			op:   moveOp(arn, "AWSPENDING", 0, 3),
			want: L(1, "AWSPREVIOUS", 2, "AWSCURRENT", 3, "", 4, "blue"),
		},
		{
			name: "attach a new label",
			op:   moveOp(arn, "green", 1, 0),
			want: L(1, "AWSPREVIOUS,green", 2, "AWSCURRENT", 3, "AWSPENDING", 4, "blue"),
		},
		{
			name: "move without RemoveFromVersionId",
			op:   moveOp(arn, "AWSCURRENT", 3, 0),
			kind: storage.ErrInvalidParameter,
			msg: "The parameter RemoveFromVersionId can't be empty. Staging label AWSCURRENT is currently attached to version " +
				vid(2) + ", so you must explicitly reference that version in RemoveFromVersionId.",
		},
		{
			name: "move a custom label without RemoveFromVersionId",
			op:   moveOp(arn, "blue", 1, 0),
			kind: storage.ErrInvalidParameter,
			msg: "The parameter RemoveFromVersionId can't be empty. Staging label blue is currently attached to version " +
				vid(4) + ", so you must explicitly reference that version in RemoveFromVersionId.",
		},
		{
			name: "remove without RemoveFromVersionId",
			op:   moveOp(arn, "blue", 0, 0),
			kind: storage.ErrInvalidParameter,
		},
		{
			name: "wrong RemoveFromVersionId",
			op:   moveOp(arn, "AWSCURRENT", 3, 1),
			kind: storage.ErrInvalidParameter,
		},
		{
			name: "wrong RemoveFromVersionId on removal",
			op:   moveOp(arn, "blue", 0, 3),
			kind: storage.ErrInvalidParameter,
		},
		{
			name: "RemoveFromVersionId for a label attached nowhere",
			op:   moveOp(arn, "green", 1, 2),
			kind: storage.ErrInvalidParameter,
		},
		{
			name: "remove AWSCURRENT entirely",
			op:   moveOp(arn, "AWSCURRENT", 0, 2),
			kind: storage.ErrInvalidParameter,
			msg:  "You can only move staging label AWSCURRENT to a different secret version. It can't be completely removed.",
		},
		{
			name: "move to an unknown version",
			op:   moveOp(arn, "AWSCURRENT", 9, 2),
			kind: storage.ErrVersionNotFound,
			msg:  "Secrets Manager can't find the specified secret version: " + vid(9),
		},
		{
			name: "remove from an unknown version",
			op:   moveOp(arn, "AWSCURRENT", 3, 9),
			kind: storage.ErrVersionNotFound,
			msg:  "Secrets Manager can't find the specified secret version: " + vid(9),
		},
		{
			name: "unknown secret",
			op:   moveOp(arnOf("nope", "AAAAAA"), "AWSCURRENT", 3, 2),
			kind: storage.ErrSecretNotFound,
			msg:  msgNoARN,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			f.ok(time.Hour, putOp(arn, 2, "b"))
			f.ok(2*time.Hour, putOp(arn, 3, "c", "AWSPENDING"))
			f.ok(3*time.Hour, putOp(arn, 4, "d", "blue"))
			wantLabels(t, f.secret(arn), start)
			at := 5 * time.Hour
			if tt.kind != nil {
				f.fails(at, tt.op, tt.kind, tt.msg)
				return
			}
			res := f.ok(at, tt.op)
			if res.ARN != arn || res.Name != "app" {
				t.Fatalf("result = %+v", res)
			}
			sec := f.secret(arn)
			wantLabels(t, sec, tt.want)
			wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(at))
			cur := f.value(arn, "", "AWSCURRENT").Version.GetVersionId()
			if !slices.Contains(tt.want[cur], "AWSCURRENT") {
				t.Fatalf("SecretValue(AWSCURRENT) reads %s", cur)
			}
		})
	}
}

// TestRotationLabels follows the labels through two rotations the way the
// AWS rotation templates drive them.
func TestRotationLabels(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("db", "AAAAAA")
	f.ok(0, createWithValue("db", "AAAAAA", 1, "pw1"))
	steps := []struct {
		op   proto.Message
		want map[string][]string
	}{
		{putOp(arn, 2, "pw2", "AWSPENDING"), L(1, "AWSCURRENT", 2, "AWSPENDING")},
		{moveOp(arn, "AWSCURRENT", 2, 1), L(1, "AWSPREVIOUS", 2, "AWSCURRENT,AWSPENDING")},
		{putOp(arn, 3, "pw3", "AWSPENDING"), L(1, "AWSPREVIOUS", 2, "AWSCURRENT", 3, "AWSPENDING")},
		{moveOp(arn, "AWSCURRENT", 3, 2), L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT,AWSPENDING")},
		// The version AWSCURRENT leaves loses AWSPENDING too, as in AWS.
		{moveOp(arn, "AWSCURRENT", 2, 3), L(1, "", 2, "AWSCURRENT", 3, "AWSPREVIOUS")},
		{moveOp(arn, "AWSCURRENT", 3, 2), L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT")},
		// A promoted rotation version superseded by a new value keeps only
		// AWSPREVIOUS (recorded from AWS; issue 18).
		{putOp(arn, 4, "pw4", "AWSPENDING"), L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT", 4, "AWSPENDING")},
		{moveOp(arn, "AWSCURRENT", 4, 3), L(1, "", 2, "", 3, "AWSPREVIOUS", 4, "AWSCURRENT,AWSPENDING")},
		{putOp(arn, 5, "pw5"), L(1, "", 2, "", 3, "", 4, "AWSPREVIOUS", 5, "AWSCURRENT")},
	}
	for i, st := range steps {
		f.ok(time.Duration(i+1)*time.Hour, st.op)
		wantLabels(t, f.secret(arn), st.want)
	}
}

func TestUpdateVersionStageLabelLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, putOp(arn, 2, "b", manyLabels(19)...))
	f.ok(2*time.Hour, moveOp(arn, "extra", 2, 0)) // the 20th label
	if n := len(f.secret(arn).GetVersions()[1].GetStages()); n != 20 {
		t.Fatalf("version 2 has %d labels, want 20", n)
	}
	f.fails(3*time.Hour, moveOp(arn, "AWSCURRENT", 2, 1), storage.ErrLimitExceeded,
		"A version can have at most 20 staging labels.")
	f.ok(4*time.Hour, moveOp(arn, "extra", 0, 2))
	f.ok(5*time.Hour, moveOp(arn, "AWSCURRENT", 2, 1))
	wantLabels(t, f.secret(arn), L(1, "AWSPREVIOUS", 2, "AWSCURRENT,"+join(manyLabels(19))))
}

func TestDeprecatedVersions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, putOp(arn, 2, "b"))
	f.ok(2*time.Hour, putOp(arn, 3, "c"))
	f.ok(3*time.Hour, putOp(arn, 4, "d", "AWSPENDING"))
	f.ok(4*time.Hour, putOp(arn, 5, "e", "AWSPENDING"))

	tests := []struct {
		includeDeprecated bool
		want              []int // newest first
	}{
		{false, []int{5, 3, 2}},
		{true, []int{5, 4, 3, 2, 1}},
	}
	for _, tt := range tests {
		page, err := f.store.SecretVersions("app", tt.includeDeprecated, 0, "")
		if err != nil {
			t.Fatalf("SecretVersions: %v", err)
		}
		if got, want := versionIDs(page.Versions), vids(tt.want...); !slices.Equal(got, want) {
			t.Fatalf("SecretVersions(includeDeprecated=%v) = %v, want %v", tt.includeDeprecated, got, want)
		}
		if page.NextToken != "" || page.Secret.GetArn() != arn {
			t.Fatalf("page = %s, token %q", page.Secret.GetArn(), page.NextToken)
		}
	}
	// Deprecated versions are still readable by id, and still stored.
	for _, id := range []int{1, 4} {
		wantProto(t, "deprecated value", f.value("app", vid(id), "").Value, sealed(string(rune('a'+id-1))))
	}
	if ids := storage.StoredValueIDs(f.store, arn); len(ids) != 5 {
		t.Fatalf("stored values = %v, want 5", ids)
	}
}

func versionIDs(vs []*storagev1.Version) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.GetVersionId())
	}
	return out
}

func vids(ns ...int) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, vid(n))
	}
	return out
}

// fillVersions creates "app" with version 1 at base and puts versions
// 2..n a second apart, each with the labels stages(i) gives (nil: default).
func fillVersions(f *fixture, n int, stages func(i int) []string) string {
	f.t.Helper()
	arn := arnOf("app", "AAAAAA")
	ops := []proto.Message{createWithValue("app", "AAAAAA", 1, "v1")}
	for i := 2; i <= n; i++ {
		var l []string
		if stages != nil {
			l = stages(i)
		}
		ops = append(ops, putOp(arn, i, fmt.Sprintf("v%d", i), l...))
	}
	f.batch(0, ops...)
	if got := len(f.secret(arn).GetVersions()); got != n {
		f.t.Fatalf("filled %d versions, want %d", got, n)
	}
	return arn
}

func TestVersionRetention(t *testing.T) {
	t.Parallel()
	msg := func(arn string) string {
		return "You have exceeded the maximum number of versions (100) for secret " + arn +
			"; unlabeled versions are removed once they are older than 24 hours."
	}
	tests := []struct {
		name   string
		fill   int
		stages func(i int) []string
		keep   int           // a version given label KEEP before the put, 0 for none
		at     time.Duration // when the new version is put
		pruned []int         // versions gone afterwards; nil with fail
		fail   bool
	}{
		{name: "the 100th version prunes nothing", fill: 99, at: 25 * time.Hour},
		{name: "the 101st prunes the oldest unlabeled version", fill: 100, at: 25 * time.Hour, pruned: []int{1}},
		{name: "a labeled oldest version is kept", fill: 100, keep: 1, at: 25 * time.Hour, pruned: []int{2}},
		{name: "nothing older than 24 hours", fill: 100, at: 23 * time.Hour, fail: true},
		{
			name: "every version labeled", fill: 100, at: 25 * time.Hour, fail: true,
			stages: func(i int) []string { return []string{fmt.Sprintf("L%d", i)} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			arn := fillVersions(f, tt.fill, tt.stages)
			if tt.keep != 0 {
				f.ok(time.Hour, moveOp(arn, "KEEP", tt.keep, 0))
			}
			next := tt.fill + 1
			op := putOp(arn, next, "new")
			if tt.fail {
				f.fails(tt.at, op, storage.ErrLimitExceeded, msg(arn))
				return
			}
			before := f.secret(arn)
			f.ok(tt.at, op)
			sec := f.secret(arn)
			want := min(tt.fill+1, storage.MaxVersions)
			if got := len(sec.GetVersions()); got != want {
				t.Fatalf("%d versions, want %d", got, want)
			}
			for _, v := range before.GetVersions() {
				id := v.GetVersionId()
				gone := slices.Contains(vids(tt.pruned...), id)
				if kept := slices.ContainsFunc(sec.GetVersions(), func(x *storagev1.Version) bool { return x.GetVersionId() == id }); kept == gone {
					t.Errorf("version %s kept = %v, want %v", id, kept, !gone)
				}
				_, err := f.store.SecretValue(arn, id, "")
				if gone {
					wantErr(t, err, storage.ErrVersionNotFound, "")
				} else if err != nil {
					t.Errorf("SecretValue(%s): %v", id, err)
				}
			}
			stored := storage.StoredValueIDs(f.store, arn)
			if len(stored) != want {
				t.Fatalf("%d stored values, want %d", len(stored), want)
			}
			for _, id := range vids(tt.pruned...) {
				if slices.Contains(stored, id) {
					t.Fatalf("the value of pruned version %s is still stored", id)
				}
			}
			page, err := f.store.SecretVersions(arn, true, 0, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Versions) != want || page.Versions[0].GetVersionId() != vid(next) {
				t.Fatalf("SecretVersions: %d versions, newest %s", len(page.Versions), page.Versions[0].GetVersionId())
			}
			if got := f.value(arn, "", "").Version.GetVersionId(); got != vid(next) {
				t.Fatalf("AWSCURRENT is %s, want %s", got, vid(next))
			}
		})
	}
}
