package server

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit"
)

// countingReplicator counts the commands committed, by op.
type countingReplicator struct {
	testkit.DirectReplicator
	mu  sync.Mutex
	ops map[string]int
}

func (r *countingReplicator) Apply(ctx context.Context, cmd *raftv1.Command) (*storage.Result, error) {
	r.mu.Lock()
	r.ops[string(cmd.ProtoReflect().WhichOneof(cmd.ProtoReflect().Descriptor().Oneofs().ByName("op")).Name())]++
	r.mu.Unlock()
	return r.DirectReplicator.Apply(ctx, cmd)
}

func (r *countingReplicator) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.ops
	r.ops = map[string]int{}
	return out
}

// kmsTestService is a Service over a fresh store with a clock the test
// moves and a wrap limit it chooses.
func kmsTestService(t *testing.T, wrapLimit uint64) (*Service, *Keys, *storage.Store, *countingReplicator, *atomic.Int64) {
	t.Helper()
	store, err := storage.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	root := make([]byte, 32)
	rand.Read(root)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	cfg := DefaultConfig()
	cfg.AccountID = "123456789012"
	cfg.KeyWrapLimit = wrapLimit
	cfg.Clock = func() time.Time { return time.Unix(0, clock.Load()) }
	rep := &countingReplicator{DirectReplicator: testkit.DirectReplicator{Store: store}, ops: map[string]int{}}
	svc, err := New(cfg, rep, store, lockedRoot(t, root), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.EnsureKeyring(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep.take()
	return svc, NewKeys(svc), store, rep, &clock
}

func stored(t *testing.T, store *storage.Store, arn, versionID string) *storage.SecretValue {
	t.Helper()
	sv, err := store.SecretValue(arn, versionID, "")
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

func readVersion(t *testing.T, svc *Service, arn, versionID string) string {
	t.Helper()
	out, err := svc.GetSecretValue(t.Context(), &cofferv1.GetSecretValueRequest{SecretId: arn, VersionId: versionID})
	if err != nil {
		t.Fatalf("read %s: %v", versionID, err)
	}
	return out.GetSecretString()
}

// TestKeyRotationWithoutReencryption: rotating a key (on demand, then
// automatically when its period is up) adds material and makes it primary;
// versions written before and after all decrypt, and the rotation is one
// command that rewrites no secret value.
func TestKeyRotationWithoutReencryption(t *testing.T) {
	svc, keys, store, rep, clock := kmsTestService(t, 0)
	ctx := t.Context()
	key, err := keys.CreateKey(ctx, &cofferv1.CreateKeyRequest{Description: "rotating"})
	if err != nil {
		t.Fatal(err)
	}
	keyID := key.GetKeyMetadata().GetKeyId()
	v1 := "before-rotation"
	sec, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "rot", SecretString: &v1, KmsKeyId: keyID, ClientRequestToken: tokA})
	if err != nil {
		t.Fatal(err)
	}
	before := stored(t, store, sec.GetArn(), tokA).Value
	rep.take()

	if _, err := keys.RotateKeyOnDemand(ctx, &cofferv1.RotateKeyOnDemandRequest{KeyId: keyID}); err != nil {
		t.Fatal(err)
	}
	if ops := rep.take(); len(ops) != 1 || ops["update_kms_key"] != 1 {
		t.Fatalf("RotateKeyOnDemand committed %v, want one update_kms_key and no secret write", ops)
	}
	if after := stored(t, store, sec.GetArn(), tokA).Value; !proto.Equal(after, before) || after.GetKeyVersion() != 1 {
		t.Fatalf("the version written before the rotation changed: key version %d", after.GetKeyVersion())
	}
	v2 := "after-rotation"
	if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: sec.GetArn(), SecretString: &v2, ClientRequestToken: tokB}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, store, sec.GetArn(), tokB).Value.GetKeyVersion(); got != 2 {
		t.Fatalf("a version written after the rotation is under key version %d, want 2", got)
	}
	if readVersion(t, svc, sec.GetArn(), tokA) != v1 || readVersion(t, svc, sec.GetArn(), tokB) != v2 {
		t.Fatal("a version does not read back after the rotation")
	}
	status, err := keys.GetKeyRotationStatus(ctx, &cofferv1.GetKeyRotationStatusRequest{KeyId: keyID})
	if err != nil || status.GetOnDemandRotationStartDate() == nil || status.GetKeyRotationEnabled() {
		t.Fatalf("GetKeyRotationStatus = %v, %v", status, err)
	}

	// Automatic: nothing before the period is up, a rotation after.
	if _, err := keys.EnableKeyRotation(ctx, &cofferv1.EnableKeyRotationRequest{KeyId: keyID, RotationPeriodInDays: 90}); err != nil {
		t.Fatal(err)
	}
	rep.take()
	if rotated, _ := svc.MaintainKeys(ctx); rotated != 0 {
		t.Fatalf("MaintainKeys rotated %d keys before the period was up", rotated)
	}
	clock.Add(int64(91 * 24 * time.Hour))
	if rotated, _ := svc.MaintainKeys(ctx); rotated != 1 {
		t.Fatalf("MaintainKeys rotated %d keys after the period, want 1", rotated)
	}
	if ops := rep.take(); len(ops) != 1 || ops["update_kms_key"] != 1 {
		t.Fatalf("automatic rotation committed %v, want one update_kms_key", ops)
	}
	status, _ = keys.GetKeyRotationStatus(ctx, &cofferv1.GetKeyRotationStatusRequest{KeyId: keyID})
	if want := time.Unix(0, clock.Load()).Add(90 * 24 * time.Hour); !status.GetNextRotationDate().AsTime().Equal(want.Truncate(time.Millisecond)) {
		t.Fatalf("next rotation %v, want %v", status.GetNextRotationDate().AsTime(), want)
	}
	v3 := "after-second-rotation"
	if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: sec.GetArn(), SecretString: &v3, ClientRequestToken: tokC}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, store, sec.GetArn(), tokC).Value.GetKeyVersion(); got != 3 {
		t.Fatalf("after the automatic rotation: key version %d, want 3", got)
	}
	for tok, want := range map[string]string{tokA: v1, tokB: v2, tokC: v3} {
		if got := readVersion(t, svc, sec.GetArn(), tok); got != want {
			t.Fatalf("version %s reads %q, want %q", tok, got, want)
		}
	}
}

// TestNonceLimitRollover: once a key version has wrapped the (injected)
// limit of values, the leader gives the key new material — the default
// key included — and new values go under it while old ones still read.
func TestNonceLimitRollover(t *testing.T) {
	svc, keys, store, _, _ := kmsTestService(t, 3)
	ctx := t.Context()
	cmk, err := keys.CreateKey(ctx, &cofferv1.CreateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cmkID := cmk.GetKeyMetadata().GetKeyId()
	arns := map[string]string{}
	for _, name := range []string{"default", "cmk"} {
		ref := ""
		if name == "cmk" {
			ref = cmkID
		}
		out, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: name, KmsKeyId: ref})
		if err != nil {
			t.Fatal(err)
		}
		arns[name] = out.GetArn()
	}
	tokens := []string{tokA, tokB}
	for _, name := range []string{"default", "cmk"} {
		for _, tok := range tokens {
			v := name + "-" + tok
			if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: arns[name], SecretString: &v, ClientRequestToken: tok}); err != nil {
				t.Fatal(err)
			}
		}
	}
	kr, err := svc.keys()
	if err != nil {
		t.Fatal(err)
	}
	defaultID := kr.DefaultKeyID()
	// The root principal's access key is not here (no IAM bootstrap), so
	// the default key has wrapped the two values only: below the limit.
	if n, _ := store.KMSWraps(defaultID, 1); n != 2 {
		t.Fatalf("the default key wrapped %d values, want 2", n)
	}
	if rotated, _ := svc.MaintainKeys(ctx); rotated != 0 {
		t.Fatalf("rolled over %d keys below the limit", rotated)
	}
	for _, name := range []string{"default", "cmk"} {
		v := name + "-third"
		if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: arns[name], SecretString: &v, ClientRequestToken: tokC}); err != nil {
			t.Fatal(err)
		}
	}
	if rotated, _ := svc.MaintainKeys(ctx); rotated != 2 {
		t.Fatalf("rolled over %d keys at the limit, want 2 (the default key and the customer key)", rotated)
	}
	const tokD = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
	for _, name := range []string{"default", "cmk"} {
		v := name + "-fourth"
		if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: arns[name], SecretString: &v, ClientRequestToken: tokD}); err != nil {
			t.Fatal(err)
		}
		if got := stored(t, store, arns[name], tokD).Value.GetKeyVersion(); got != 2 {
			t.Fatalf("%s: a value after the rollover is under key version %d, want 2", name, got)
		}
		for _, tok := range append(tokens, tokC, tokD) {
			if readVersion(t, svc, arns[name], tok) == "" {
				t.Fatalf("%s version %s does not read after the rollover", name, tok)
			}
		}
	}
	if n, _ := store.KMSWraps(cmkID, 2); n != 1 {
		t.Fatalf("the customer key's new material wrapped %d values, want 1", n)
	}
}

// TestKeyOperationErrors: KMS's validation and state errors, and the
// default key's refusals.
func TestKeyOperationErrors(t *testing.T) {
	svc, keys, _, _, clock := kmsTestService(t, 0)
	ctx := t.Context()
	k, err := keys.CreateKey(ctx, &cofferv1.CreateKeyRequest{Description: "x"})
	if err != nil {
		t.Fatal(err)
	}
	id := k.GetKeyMetadata().GetKeyId()
	for _, c := range []struct {
		name string
		call func() error
		want string
	}{
		{"asymmetric", func() error {
			_, err := keys.CreateKey(ctx, &cofferv1.CreateKeyRequest{KeySpec: "RSA_2048"})
			return err
		}, TypeKMSUnsupported},
		{"bad policy", func() error {
			_, err := keys.CreateKey(ctx, &cofferv1.CreateKeyRequest{Policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}`})
			return err
		}, TypeMalformedPolicy},
		{"unknown key", func() error {
			_, err := keys.DescribeKey(ctx, &cofferv1.DescribeKeyRequest{KeyId: "11111111-2222-4333-8444-555555555555"})
			return err
		}, TypeKMSNotFound},
		{"another region's ARN", func() error {
			_, err := keys.DescribeKey(ctx, &cofferv1.DescribeKeyRequest{KeyId: "arn:aws:kms:eu-west-1:123456789012:key/" + id})
			return err
		}, TypeKMSNotFound},
		{"empty key id", func() error {
			_, err := keys.DescribeKey(ctx, &cofferv1.DescribeKeyRequest{})
			return err
		}, TypeValidation},
		{"rotation period too short", func() error {
			_, err := keys.EnableKeyRotation(ctx, &cofferv1.EnableKeyRotationRequest{KeyId: id, RotationPeriodInDays: 30})
			return err
		}, TypeValidation},
		{"deletion window too short", func() error {
			_, err := keys.ScheduleKeyDeletion(ctx, &cofferv1.ScheduleKeyDeletionRequest{KeyId: id, PendingWindowInDays: 6})
			return err
		}, TypeValidation},
		{"disable the default key", func() error {
			_, err := keys.DisableKey(ctx, &cofferv1.DisableKeyRequest{KeyId: "alias/aws/secretsmanager"})
			return err
		}, TypeKMSUnsupported},
		{"alias on the default key", func() error {
			kr, _ := svc.keys()
			_, err := keys.CreateAlias(ctx, &cofferv1.CreateAliasRequest{AliasName: "alias/mine", TargetKeyId: kr.DefaultKeyID()})
			return err
		}, TypeKMSUnsupported},
		{"reserved alias", func() error {
			_, err := keys.CreateAlias(ctx, &cofferv1.CreateAliasRequest{AliasName: "alias/coffer/x", TargetKeyId: id})
			return err
		}, TypeKMSInvalidAliasName},
		{"alias to an alias", func() error {
			_, err := keys.CreateAlias(ctx, &cofferv1.CreateAliasRequest{AliasName: "alias/x", TargetKeyId: "alias/coffer/default"})
			return err
		}, TypeValidation},
		{"secret under an unknown key", func() error {
			_, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "nokey", KmsKeyId: "alias/none"})
			return err
		}, TypeInvalidParameter},
		{"bad marker", func() error {
			_, err := keys.ListKeys(ctx, &cofferv1.ListKeysRequest{Marker: "nope"})
			return err
		}, TypeKMSInvalidMarker},
	} {
		if got := apiType(c.call()); got != c.want {
			t.Errorf("%s: %q, want %s", c.name, got, c.want)
		}
	}

	// A key pending deletion refuses use; once its date passes, the leader
	// deletes it and what it protected can no longer be read.
	v := "doomed"
	sec, err := svc.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "doomed", SecretString: &v, KmsKeyId: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.ScheduleKeyDeletion(ctx, &cofferv1.ScheduleKeyDeletionRequest{KeyId: id, PendingWindowInDays: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()}); apiType(err) != TypeDecryptionFailure {
		t.Fatalf("read under a key pending deletion: %v, want DecryptionFailure", err)
	}
	if _, err := keys.RotateKeyOnDemand(ctx, &cofferv1.RotateKeyOnDemandRequest{KeyId: id}); apiType(err) != TypeKMSInvalidState {
		t.Fatalf("rotate a key pending deletion: %v, want KMSInvalidStateException", err)
	}
	if _, deleted := svc.MaintainKeys(ctx); deleted != 0 {
		t.Fatal("a key was deleted before its date")
	}
	clock.Add(int64(8 * 24 * time.Hour))
	if _, deleted := svc.MaintainKeys(ctx); deleted != 1 {
		t.Fatalf("MaintainKeys deleted %d keys after the date, want 1", deleted)
	}
	if _, err := keys.DescribeKey(ctx, &cofferv1.DescribeKeyRequest{KeyId: id}); apiType(err) != TypeKMSNotFound {
		t.Fatalf("DescribeKey of a deleted key: %v", err)
	}
	if _, err := svc.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: sec.GetArn()}); apiType(err) != TypeDecryptionFailure {
		t.Fatalf("read under a deleted key: %v, want DecryptionFailure", err)
	}
}
