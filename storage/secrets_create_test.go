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
		Tagged:          true,
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
