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

const (
	msgMarked = "You can't perform this operation on the secret because it was marked for deletion."
	msgNoARN  = "Secrets Manager can't find the specified secret."
)

func TestCreateSecretWithoutValue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app/db", "AbC123")
	op := createOp("app/db", "AbC123")
	op.Description = "the database"
	op.KmsKeyId = "alias/app"
	op.Tags = tags("env", "prod", "team", "core")
	res := f.ok(time.Minute, op)
	if res.ARN != arn || res.Name != "app/db" || res.VersionID != "" || res.Stages != nil {
		t.Fatalf("result = %+v, want ARN %s, name app/db and no version", res, arn)
	}

	sec := f.secret("app/db")
	want := &storagev1.Secret{
		Name:            "app/db",
		Arn:             arn,
		Description:     "the database",
		KmsKeyId:        "alias/app",
		Tags:            tags("env", "prod", "team", "core"),
		CreatedDate:     timestamppb.New(base.Add(time.Minute)),
		LastChangedDate: timestamppb.New(base.Add(time.Minute)),
		PrimaryRegion:   region,
	}
	wantProto(t, "secret", sec, want)

	_, err := f.store.SecretValue("app/db", "", "")
	wantErr(t, err, storage.ErrStageNotFound, "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")
	page, err := f.store.SecretVersions("app/db", true, 0, "")
	if err != nil {
		t.Fatalf("SecretVersions: %v", err)
	}
	if len(page.Versions) != 0 {
		t.Fatalf("SecretVersions = %d versions, want none", len(page.Versions))
	}
	if ids := storage.StoredValueIDs(f.store, arn); len(ids) != 0 {
		t.Fatalf("stored values %v, want none", ids)
	}
}

func TestCreateSecretWithValue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app/db", "AbC123")
	res := f.ok(time.Minute, createWithValue("app/db", "AbC123", 1, "hunter2"))
	if res.ARN != arn || res.VersionID != vid(1) || !slices.Equal(res.Stages, []string{storage.StageCurrent}) {
		t.Fatalf("result = %+v, want %s version %s [AWSCURRENT]", res, arn, vid(1))
	}
	sec := f.secret(arn)
	wantLabels(t, sec, L(1, "AWSCURRENT"))
	v := sec.GetVersions()[0]
	wantTime(t, "version CreatedDate", v.GetCreatedDate(), base.Add(time.Minute))
	if v.GetKmsKeyId() != "key-1" || string(v.GetFingerprint()) != string(sealed("hunter2").GetFingerprint()) {
		t.Fatalf("version = %v, want the sealed value's key id and fingerprint", v)
	}

	got := f.value("app/db", "", "")
	if got.Version.GetVersionId() != vid(1) || got.Secret.GetArn() != arn {
		t.Fatalf("SecretValue picked %s of %s", got.Version.GetVersionId(), got.Secret.GetArn())
	}
	wantProto(t, "value", got.Value, sealed("hunter2"))
}

func TestCreateSecretRetry(t *testing.T) {
	t.Parallel()
	arn := arnOf("app/db", "AbC123")
	tests := []struct {
		name    string
		retry   *raftv1.CreateSecret
		kind    error  // nil: the retry succeeds with the first answer
		msg     string // expected message when kind != nil
		version string // expected VersionID on success
	}{
		{
			name:    "same token same value",
			retry:   createWithValue("app/db", "AbC123", 1, "hunter2"),
			version: vid(1),
		},
		{
			// A retried request is proposed again with a fresh suffix; the
			// answer must still be the secret that exists.
			name:    "same token same value new suffix",
			retry:   createWithValue("app/db", "ZzZ999", 1, "hunter2"),
			version: vid(1),
		},
		{
			name:  "same token other value",
			retry: createWithValue("app/db", "AbC123", 1, "other"),
			kind:  storage.ErrTokenInUse,
			msg: fmt.Sprintf("You can't use ClientRequestToken %s because that value is already in use for a version of secret %s.",
				vid(1), arn),
		},
		{
			name:  "other token",
			retry: createWithValue("app/db", "AbC123", 2, "hunter2"),
			kind:  storage.ErrSecretExists,
			msg:   "The operation failed because the secret app/db already exists.",
		},
		{
			name:  "no value",
			retry: createOp("app/db", "AbC123"),
			kind:  storage.ErrSecretExists,
			msg:   "The operation failed because the secret app/db already exists.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			first := f.ok(0, createWithValue("app/db", "AbC123", 1, "hunter2"))
			if tt.kind != nil {
				f.fails(time.Hour, tt.retry, tt.kind, tt.msg)
				return
			}
			before := dump(t, f.store)
			res := f.ok(time.Hour, tt.retry)
			if res.ARN != first.ARN || res.Name != first.Name || res.VersionID != tt.version ||
				!slices.Equal(res.Stages, first.Stages) {
				t.Fatalf("retry result = %+v, want the first one %+v", res, first)
			}
			after := dump(t, f.store)
			after.applied = before.applied
			sameState(t, after, before)
		})
	}
}

func TestCreateSecretTooManyTags(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	op := createWithValue("a", "AAAAAA", 1, "v")
	for i := range storage.MaxTagsPerSecret + 1 {
		op.Tags = append(op.Tags, tags(fmt.Sprintf("k%02d", i), "v")...)
	}
	f.fails(0, op, storage.ErrLimitExceeded, "")
	if _, err := f.store.Secret("a"); err == nil {
		t.Fatal("the secret was created despite the tag limit")
	}
	op.Tags = op.Tags[:storage.MaxTagsPerSecret]
	f.ok(1, op)
	if n := len(f.secret("a").GetTags()); n != storage.MaxTagsPerSecret {
		t.Fatalf("%d tags, want %d", n, storage.MaxTagsPerSecret)
	}
}

func TestCreateSecretOverScheduledDeletion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app/db", "AbC123")
	f.ok(0, createWithValue("app/db", "AbC123", 1, "v1"))
	f.ok(time.Hour, deleteOp(arn, 7))
	msg := "You can't create this secret because a secret with this name is already scheduled for deletion."
	f.fails(2*time.Hour, createWithValue("app/db", "NeW111", 2, "v2"), storage.ErrMarkedForDeletion, msg)
	// Even a retry of the original create is refused while deleted.
	f.fails(2*time.Hour, createWithValue("app/db", "AbC123", 1, "v1"), storage.ErrMarkedForDeletion, msg)
	f.ok(3*time.Hour, &raftv1.RestoreSecret{Arn: arn})
	f.fails(4*time.Hour, createWithValue("app/db", "NeW111", 2, "v2"), storage.ErrSecretExists,
		"The operation failed because the secret app/db already exists.")
}

// TestCreateSecretAfterForceDelete recreates a name under a new ARN; the old
// ARN must then name nothing, so commands proposed against it fail.
func TestCreateSecretAfterForceDelete(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	oldARN, newARN := arnOf("app/db", "OlD111"), arnOf("app/db", "NeW222")
	f.ok(0, createWithValue("app/db", "OlD111", 1, "old"))
	f.ok(time.Minute, putOp(oldARN, 2, "old2"))
	f.ok(time.Hour, forceDeleteOp(oldARN))
	res := f.ok(2*time.Hour, createWithValue("app/db", "NeW222", 3, "new"))
	if res.ARN != newARN {
		t.Fatalf("recreated ARN = %s, want %s", res.ARN, newARN)
	}
	sec := f.secret("app/db")
	if sec.GetArn() != newARN {
		t.Fatalf("Secret(name).Arn = %s, want %s", sec.GetArn(), newARN)
	}
	wantLabels(t, sec, L(3, "AWSCURRENT"))
	wantTime(t, "CreatedDate", sec.GetCreatedDate(), base.Add(2*time.Hour))
	if _, err := f.store.Secret(oldARN); err == nil {
		t.Fatal("the old full ARN still resolves")
	}
	if got := mustSecret(t, f.store, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db").GetArn(); got != newARN {
		t.Fatalf("partial ARN resolves to %s, want %s", got, newARN)
	}
	if ids := storage.StoredValueIDs(f.store, oldARN); len(ids) != 0 {
		t.Fatalf("values of the old secret survive: %v", ids)
	}
	_, err := f.store.SecretValue("app/db", vid(1), "")
	wantErr(t, err, storage.ErrVersionNotFound, "Secrets Manager can't find the specified secret value for VersionId: "+vid(1))

	// Every command aimed at the old ARN is refused and touches nothing.
	for _, op := range []proto.Message{
		putOp(oldARN, 4, "late"),
		&raftv1.UpdateSecret{Arn: oldARN, Description: proto.String("x")},
		moveOp(oldARN, "X", 3, 0),
		deleteOp(oldARN, 7),
		forceDeleteOp(oldARN),
		&raftv1.RestoreSecret{Arn: oldARN},
		&raftv1.TagResource{Arn: oldARN, Tags: tags("k", "v")},
		&raftv1.UntagResource{Arn: oldARN, TagKeys: []string{"k"}},
		&raftv1.PutResourcePolicy{Arn: oldARN, ResourcePolicy: "{}"},
		&raftv1.DeleteResourcePolicy{Arn: oldARN},
		&raftv1.PurgeSecret{Arn: oldARN},
	} {
		t.Run(fmt.Sprintf("%T", op), func(t *testing.T) {
			sub := *f
			sub.t = t
			sub.fails(3*time.Hour, op, storage.ErrSecretNotFound, msgNoARN)
			f.index = sub.index
		})
	}
}

func TestCreateSecretInvalidNamePanics(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, op := range []*raftv1.CreateSecret{
		{Name: "bad name", Arn: arnOf("bad name", "AAAAAA")},
		{Name: "", Arn: arnOf("", "AAAAAA")},
		{Name: "good"},
	} {
		mustPanic(t, "invalid name or no ARN", func() { f.store.Apply(100, command(0, op)) })
	}
	if got := f.store.AppliedIndex(); got != 0 {
		t.Fatalf("AppliedIndex = %d after panics, want 0", got)
	}
	if got := allNames(t, f.store); len(got) != 0 {
		t.Fatalf("secrets after panics = %v, want none", got)
	}
}

func TestPutSecretValue(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	tests := []struct {
		name   string
		puts   []*raftv1.PutSecretValue // applied after creating with version 1
		want   map[string][]string
		result []string // Stages of the last put's result
	}{
		{
			name:   "default moves AWSCURRENT and AWSPREVIOUS",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b")},
			want:   L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			result: []string{"AWSCURRENT"},
		},
		{
			name:   "third put leaves the oldest deprecated",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b"), putOp(arn, 3, "c")},
			want:   L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT"),
			result: []string{"AWSCURRENT"},
		},
		{
			name:   "explicit AWSCURRENT behaves like the default",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSCURRENT")},
			want:   L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			result: []string{"AWSCURRENT"},
		},
		{
			name:   "AWSPENDING leaves AWSCURRENT alone",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSPENDING")},
			want:   L(1, "AWSCURRENT", 2, "AWSPENDING"),
			result: []string{"AWSPENDING"},
		},
		{
			name:   "AWSPENDING moves off the old pending version",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSPENDING"), putOp(arn, 3, "c", "AWSPENDING")},
			want:   L(1, "AWSCURRENT", 2, "", 3, "AWSPENDING"),
			result: []string{"AWSPENDING"},
		},
		{
			name:   "custom label with AWSCURRENT",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "AWSCURRENT", "CHAMBER1")},
			want:   L(1, "AWSPREVIOUS", 2, "AWSCURRENT,CHAMBER1"),
			result: []string{"AWSCURRENT", "CHAMBER1"},
		},
		{
			name: "custom label moves between versions",
			puts: []*raftv1.PutSecretValue{
				putOp(arn, 2, "b", "AWSCURRENT", "CHAMBER"),
				putOp(arn, 3, "c", "AWSCURRENT", "CHAMBER"),
			},
			want:   L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT,CHAMBER"),
			result: []string{"AWSCURRENT", "CHAMBER"},
		},
		{
			name:   "custom label alone",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", "blue")},
			want:   L(1, "AWSCURRENT", 2, "blue"),
			result: []string{"blue"},
		},
		{
			name:   "twenty labels",
			puts:   []*raftv1.PutSecretValue{putOp(arn, 2, "b", manyLabels(20)...)},
			want:   L(1, "AWSCURRENT", 2, join(manyLabels(20))),
			result: manyLabels(20),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			var res *storage.Result
			for i, p := range tt.puts {
				res = f.ok(time.Duration(i+1)*time.Hour, p)
			}
			last := tt.puts[len(tt.puts)-1]
			if res.ARN != arn || res.VersionID != last.GetVersion().GetVersionId() {
				t.Fatalf("result = %+v, want %s version %s", res, arn, last.GetVersion().GetVersionId())
			}
			got := slices.Clone(res.Stages)
			slices.Sort(got)
			want := slices.Clone(tt.result)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("result stages = %v, want %v", res.Stages, tt.result)
			}
			sec := f.secret(arn)
			wantLabels(t, sec, tt.want)
			wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(time.Duration(len(tt.puts))*time.Hour))
			wantTime(t, "CreatedDate", sec.GetCreatedDate(), base)
			wantProto(t, "new value", f.value(arn, last.GetVersion().GetVersionId(), "").Value, last.GetVersion().GetValue())
		})
	}
}

func manyLabels(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("L%02d", i))
	}
	return out
}

func join(l []string) string {
	s := ""
	for i, x := range l {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}

func TestPutSecretValueErrors(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	tests := []struct {
		name  string
		setup []proto.Message // after creating with version 1 and putting version 2
		op    proto.Message
		kind  error
		msg   string
	}{
		{
			name: "token reused with another value",
			op:   putOp(arn, 2, "not b"),
			kind: storage.ErrTokenInUse,
			msg: fmt.Sprintf("You can't use ClientRequestToken %s because that value is already in use for a version of secret %s.",
				vid(2), arn),
		},
		{
			name: "token of the first version reused",
			op:   putOp(arn, 1, "b"),
			kind: storage.ErrTokenInUse,
		},
		{
			name:  "secret scheduled for deletion",
			setup: []proto.Message{deleteOp(arn, 7)},
			op:    putOp(arn, 3, "c"),
			kind:  storage.ErrMarkedForDeletion,
			msg:   msgMarked,
		},
		{
			name: "unknown secret",
			op:   putOp(arnOf("nope", "AAAAAA"), 3, "c"),
			kind: storage.ErrSecretNotFound,
			msg:  msgNoARN,
		},
		{
			name: "partial ARN is not accepted in a command",
			op:   putOp("arn:aws:secretsmanager:eu-west-1:123456789012:secret:app", 3, "c"),
			kind: storage.ErrSecretNotFound,
		},
		{
			name:  "deleted and recreated",
			setup: []proto.Message{forceDeleteOp(arn), createWithValue("app", "BBBBBB", 5, "new")},
			op:    putOp(arn, 3, "c"),
			kind:  storage.ErrSecretNotFound,
			msg:   msgNoARN,
		},
		{
			name: "twenty-one labels",
			op:   putOp(arn, 3, "c", manyLabels(21)...),
			kind: storage.ErrLimitExceeded,
			msg:  "A version can have at most 20 staging labels.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			f.ok(time.Minute, putOp(arn, 2, "b"))
			for i, op := range tt.setup {
				f.ok(time.Hour+time.Duration(i)*time.Minute, op)
			}
			f.fails(2*time.Hour, tt.op, tt.kind, tt.msg)
		})
	}
}

// TestPutSecretValueRetry: the same token and value is a no-op that answers
// like the first call, even when AWSCURRENT has moved on since.
func TestPutSecretValueRetry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	first := f.ok(time.Hour, putOp(arn, 2, "b"))
	before := dump(t, f.store)
	res := f.ok(2*time.Hour, putOp(arn, 2, "b"))
	if res.ARN != arn || res.VersionID != vid(2) || !slices.Equal(res.Stages, first.Stages) {
		t.Fatalf("retry result = %+v, want %+v", res, first)
	}
	after := dump(t, f.store)
	after.applied = before.applied
	sameState(t, after, before)
	wantTime(t, "LastChangedDate", f.secret(arn).GetLastChangedDate(), base.Add(time.Hour))

	// A retry of a version that is no longer current still succeeds and
	// reports the labels the version has now.
	f.ok(3*time.Hour, putOp(arn, 3, "c"))
	res = f.ok(4*time.Hour, putOp(arn, 2, "b"))
	if res.VersionID != vid(2) || !slices.Equal(res.Stages, []string{"AWSPREVIOUS"}) {
		t.Fatalf("late retry result = %+v, want version 2 [AWSPREVIOUS]", res)
	}
	wantLabels(t, f.secret(arn), L(1, "", 2, "AWSPREVIOUS", 3, "AWSCURRENT"))
}

// TestPutSecretValueFirstVersion: AWS attaches AWSCURRENT to the first
// version of a secret whatever labels the put names.
func TestPutSecretValueFirstVersion(t *testing.T) {
	t.Parallel()
	arn := arnOf("empty", "AAAAAA")
	tests := []struct {
		name   string
		stages []string
		want   map[string][]string
	}{
		{"default", nil, L(1, "AWSCURRENT")},
		{"AWSPENDING", []string{"AWSPENDING"}, L(1, "AWSCURRENT,AWSPENDING")},
		{"custom", []string{"blue"}, L(1, "AWSCURRENT,blue")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createOp("empty", "AAAAAA"))
			res := f.ok(time.Hour, putOp(arn, 1, "a", tt.stages...))
			if !slices.Contains(res.Stages, "AWSCURRENT") {
				t.Fatalf("result stages = %v, want AWSCURRENT among them", res.Stages)
			}
			wantLabels(t, f.secret(arn), tt.want)
			if got := f.value("empty", "", "").Version.GetVersionId(); got != vid(1) {
				t.Fatalf("AWSCURRENT value is version %s, want %s", got, vid(1))
			}
		})
	}
}

func TestUpdateSecret(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	at := 5 * time.Hour
	tests := []struct {
		name    string
		op      *raftv1.UpdateSecret
		desc    string
		kms     string
		labels  map[string][]string
		version string // expected Result.VersionID
	}{
		{
			name:   "description only",
			op:     &raftv1.UpdateSecret{Arn: arn, Description: proto.String("new words")},
			desc:   "new words",
			kms:    "alias/old",
			labels: L(1, "AWSCURRENT"),
		},
		{
			name:   "clear description",
			op:     &raftv1.UpdateSecret{Arn: arn, Description: proto.String("")},
			desc:   "",
			kms:    "alias/old",
			labels: L(1, "AWSCURRENT"),
		},
		{
			name:   "KMS key only",
			op:     &raftv1.UpdateSecret{Arn: arn, KmsKeyId: proto.String("alias/new")},
			desc:   "old words",
			kms:    "alias/new",
			labels: L(1, "AWSCURRENT"),
		},
		{
			name:    "value",
			op:      &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")},
			desc:    "old words",
			kms:     "alias/old",
			labels:  L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			version: vid(2),
		},
		{
			name: "everything",
			op: &raftv1.UpdateSecret{Arn: arn, Description: proto.String("d"), KmsKeyId: proto.String("k"),
				Version: newVersion(2, "b")},
			desc:    "d",
			kms:     "k",
			labels:  L(1, "AWSPREVIOUS", 2, "AWSCURRENT"),
			version: vid(2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			op := createWithValue("app", "AAAAAA", 1, "a")
			op.Description, op.KmsKeyId = "old words", "alias/old"
			f.ok(0, op)
			res := f.ok(at, tt.op)
			if res.ARN != arn || res.Name != "app" || res.VersionID != tt.version {
				t.Fatalf("result = %+v, want %s version %q", res, arn, tt.version)
			}
			if tt.version != "" && !slices.Equal(res.Stages, []string{"AWSCURRENT"}) {
				t.Fatalf("result stages = %v, want [AWSCURRENT]", res.Stages)
			}
			sec := f.secret(arn)
			if sec.GetDescription() != tt.desc || sec.GetKmsKeyId() != tt.kms {
				t.Fatalf("description, kms = %q, %q; want %q, %q", sec.GetDescription(), sec.GetKmsKeyId(), tt.desc, tt.kms)
			}
			wantLabels(t, sec, tt.labels)
			wantTime(t, "LastChangedDate", sec.GetLastChangedDate(), base.Add(at))
			if tt.version != "" {
				wantProto(t, "AWSCURRENT value", f.value(arn, "", "AWSCURRENT").Value, tt.op.GetVersion().GetValue())
			}
		})
	}
}

func TestUpdateSecretErrors(t *testing.T) {
	t.Parallel()
	arn := arnOf("app", "AAAAAA")
	tests := []struct {
		name  string
		setup []proto.Message
		op    *raftv1.UpdateSecret
		kind  error
		msg   string
	}{
		{
			name:  "scheduled for deletion",
			setup: []proto.Message{deleteOp(arn, 30)},
			op:    &raftv1.UpdateSecret{Arn: arn, Description: proto.String("x")},
			kind:  storage.ErrMarkedForDeletion,
			msg:   msgMarked,
		},
		{
			name:  "scheduled for deletion, with value",
			setup: []proto.Message{deleteOp(arn, 30)},
			op:    &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")},
			kind:  storage.ErrMarkedForDeletion,
			msg:   msgMarked,
		},
		{
			name: "unknown secret",
			op:   &raftv1.UpdateSecret{Arn: arnOf("other", "AAAAAA"), Description: proto.String("x")},
			kind: storage.ErrSecretNotFound,
			msg:  msgNoARN,
		},
		{
			name: "token in use, description not changed either",
			op:   &raftv1.UpdateSecret{Arn: arn, Description: proto.String("x"), Version: newVersion(1, "not a")},
			kind: storage.ErrTokenInUse,
			msg: fmt.Sprintf("You can't use ClientRequestToken %s because that value is already in use for a version of secret %s.",
				vid(1), arn),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
			for _, op := range tt.setup {
				f.ok(time.Minute, op)
			}
			f.fails(time.Hour, tt.op, tt.kind, tt.msg)
		})
	}
}

func TestUpdateSecretRetry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")})
	before := dump(t, f.store)
	res := f.ok(2*time.Hour, &raftv1.UpdateSecret{Arn: arn, Version: newVersion(2, "b")})
	if res.VersionID != vid(2) || !slices.Equal(res.Stages, []string{"AWSCURRENT"}) {
		t.Fatalf("retry result = %+v, want version 2 [AWSCURRENT]", res)
	}
	after := dump(t, f.store)
	after.applied = before.applied
	sameState(t, after, before)
}

func TestSecretValue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("app", "AAAAAA")
	f.ok(0, createWithValue("app", "AAAAAA", 1, "a"))
	f.ok(time.Hour, putOp(arn, 2, "b"))
	f.ok(2*time.Hour, putOp(arn, 3, "c", "AWSPENDING"))
	f.ok(3*time.Hour, putOp(arn, 4, "d", "AWSCURRENT"))
	f.ok(4*time.Hour, putOp(arn, 5, "e", "AWSCURRENT")) // 2 is now deprecated
	wantLabels(t, f.secret(arn), L(1, "", 2, "", 3, "AWSPENDING", 4, "AWSPREVIOUS", 5, "AWSCURRENT"))

	tests := []struct {
		name      string
		ref       string
		versionID string
		stage     string
		want      int    // version number on success
		plain     string // its value
		kind      error
		msg       string
	}{
		{name: "default is AWSCURRENT", ref: "app", want: 5, plain: "e"},
		{name: "by full ARN", ref: arn, want: 5, plain: "e"},
		{name: "by partial ARN", ref: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app", want: 5, plain: "e"},
		{name: "by id", ref: "app", versionID: vid(4), want: 4, plain: "d"},
		{name: "deprecated by id", ref: "app", versionID: vid(2), want: 2, plain: "b"},
		{name: "by stage", ref: "app", stage: "AWSPREVIOUS", want: 4, plain: "d"},
		{name: "pending by stage", ref: "app", stage: "AWSPENDING", want: 3, plain: "c"},
		{name: "id and stage agree", ref: "app", versionID: vid(3), stage: "AWSPENDING", want: 3, plain: "c"},
		{
			name: "id and stage disagree", ref: "app", versionID: vid(4), stage: "AWSCURRENT",
			kind: storage.ErrStageMismatch, msg: "You provided a VersionStage that is not associated to the provided VersionId.",
		},
		{
			name: "deprecated id with a stage", ref: "app", versionID: vid(2), stage: "AWSCURRENT",
			kind: storage.ErrStageMismatch, msg: "You provided a VersionStage that is not associated to the provided VersionId.",
		},
		{
			name: "unknown id", ref: "app", versionID: vid(9),
			kind: storage.ErrVersionNotFound, msg: "Secrets Manager can't find the specified secret value for VersionId: " + vid(9),
		},
		{
			name: "unknown stage", ref: "app", stage: "blue",
			kind: storage.ErrStageNotFound, msg: "Secrets Manager can't find the specified secret value for staging label: blue",
		},
		{
			name: "unknown secret", ref: "nope",
			kind: storage.ErrSecretNotFound, msg: msgNoARN,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.store.SecretValue(tt.ref, tt.versionID, tt.stage)
			if tt.kind != nil {
				wantErr(t, err, tt.kind, tt.msg)
				if got != nil {
					t.Fatalf("SecretValue returned %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("SecretValue: %v", err)
			}
			if got.Version.GetVersionId() != vid(tt.want) || got.Secret.GetArn() != arn {
				t.Fatalf("got version %s of %s, want %s", got.Version.GetVersionId(), got.Secret.GetArn(), vid(tt.want))
			}
			wantProto(t, "value", got.Value, sealed(tt.plain))
		})
	}

	// Once the secret is scheduled for deletion no read succeeds, even of a
	// version that exists.
	f.ok(5*time.Hour, deleteOp(arn, 7))
	for _, q := range [][2]string{{"", ""}, {vid(5), ""}, {"", "AWSCURRENT"}, {vid(9), ""}} {
		_, err := f.store.SecretValue("app", q[0], q[1])
		wantErr(t, err, storage.ErrMarkedForDeletion, msgMarked)
	}
}

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
