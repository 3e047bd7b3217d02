package storage_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

// base is the proposer's clock at offset 0; every command's header time is
// base plus an offset the test chooses.
var base = time.Date(2026, time.March, 14, 9, 26, 53, 0, time.UTC)

// Messages several tests expect, in AWS's words.
const (
	msgMarked = "You can't perform this operation on the secret because it was marked for deletion."
	msgNoARN  = "Secrets Manager can't find the specified secret."
)

const (
	day = 24 * time.Hour

	partition = "aws"
	region    = "eu-west-1"
	account   = "123456789012"
)

// arnOf is the full ARN of name with the given 6-character suffix.
func arnOf(name, suffix string) string {
	return storage.SecretARN(partition, region, account, name, suffix)
}

// vid is version id n, shaped like the UUID tokens SDKs send.
func vid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// sealed fakes what the kms package would produce for plain: encryption is
// not this package's job, but the fingerprint must differ between values.
func sealed(plain string) *storagev1.SealedValue {
	fp := sha256.Sum256([]byte(plain))
	return &storagev1.SealedValue{
		Kind:           storagev1.ValueKind_VALUE_KIND_STRING,
		KmsKeyId:       "key-1",
		KeyVersion:     1,
		WrappedDataKey: []byte("wrapped-key-for-" + plain),
		Ciphertext:     []byte("ciphertext-of-" + plain),
		Fingerprint:    fp[:],
	}
}

func newVersion(id int, plain string) *raftv1.NewVersion {
	return &raftv1.NewVersion{VersionId: vid(id), Value: sealed(plain)}
}

func tags(kv ...string) []*cofferv1.Tag {
	var out []*cofferv1.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &cofferv1.Tag{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// command wraps op in a Command whose header time is base+at, as the
// case of the Command oneof whose message op is.
func command(at time.Duration, op proto.Message) *raftv1.Command {
	c := &raftv1.Command{Header: &raftv1.Header{
		RequestId: fmt.Sprintf("req-%d", at),
		Time:      timestamppb.New(base.Add(at)),
	}}
	fd := opCase(op.ProtoReflect().Descriptor().FullName())
	if fd == nil {
		panic(fmt.Sprintf("command: %T is no case of the Command oneof", op))
	}
	c.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(op.ProtoReflect()))
	return c
}

// opCases are the cases of the Command oneof.
func opCases() protoreflect.FieldDescriptors {
	return (&raftv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
}

// opCase is the case of the Command oneof whose message is name, or nil.
func opCase(name protoreflect.FullName) protoreflect.FieldDescriptor {
	cases := opCases()
	for i := range cases.Len() {
		if fd := cases.Get(i); fd.Message().FullName() == name {
			return fd
		}
	}
	return nil
}

// Op builders for the commands most tests need.

func createOp(name, suffix string) *raftv1.CreateSecret {
	return &raftv1.CreateSecret{Name: name, Arn: arnOf(name, suffix), PrimaryRegion: region}
}

func createWithValue(name, suffix string, id int, plain string) *raftv1.CreateSecret {
	op := createOp(name, suffix)
	op.Version = newVersion(id, plain)
	op.ClientRequestToken = vid(id)
	return op
}

func putOp(arn string, id int, plain string, stages ...string) *raftv1.PutSecretValue {
	return &raftv1.PutSecretValue{Arn: arn, Version: newVersion(id, plain), VersionStages: stages}
}

func moveOp(arn, label string, moveTo, removeFrom int) *raftv1.UpdateVersionStage {
	op := &raftv1.UpdateVersionStage{Arn: arn, VersionStage: label}
	if moveTo != 0 {
		op.MoveToVersionId = vid(moveTo)
	}
	if removeFrom != 0 {
		op.RemoveFromVersionId = vid(removeFrom)
	}
	return op
}

func deleteOp(arn string, days int64) *raftv1.DeleteSecret {
	return &raftv1.DeleteSecret{Arn: arn, RecoveryWindowDays: days}
}

func forceDeleteOp(arn string) *raftv1.DeleteSecret {
	return &raftv1.DeleteSecret{Arn: arn, Force: true}
}

// fixture is one store and the next Raft index to apply at.
type fixture struct {
	t     testing.TB
	store *storage.Store
	index uint64
}

func openStore(t testing.TB) *storage.Store {
	t.Helper()
	s, err := storage.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return &fixture{t: t, store: openStore(t)}
}

// apply applies op at the next index with header time base+at.
func (f *fixture) apply(at time.Duration, op proto.Message) *storage.Result {
	f.t.Helper()
	f.index++
	res := f.store.Apply(f.index, command(at, op))
	if res == nil {
		f.t.Fatalf("Apply(%d, %T) returned nil", f.index, op)
	}
	if res.Skipped {
		f.t.Fatalf("Apply(%d, %T) was skipped", f.index, op)
	}
	return res
}

// ok applies op and fails the test on a domain error.
func (f *fixture) ok(at time.Duration, op proto.Message) *storage.Result {
	f.t.Helper()
	res := f.apply(at, op)
	if res.Err != nil {
		f.t.Fatalf("Apply %T: unexpected error %v", op, res.Err)
	}
	return res
}

// batch applies ops in one ApplyBatch at consecutive indexes, all at base+at
// plus one second per entry, and fails on any domain error.
func (f *fixture) batch(at time.Duration, ops ...proto.Message) []*storage.Result {
	f.t.Helper()
	entries := make([]storage.Entry, len(ops))
	for i, op := range ops {
		f.index++
		entries[i] = storage.Entry{Index: f.index, Cmd: command(at+time.Duration(i)*time.Second, op)}
	}
	results := f.store.ApplyBatch(entries)
	for i, res := range results {
		if res.Err != nil {
			f.t.Fatalf("ApplyBatch entry %d (%T): %v", i, ops[i], res.Err)
		}
	}
	return results
}

// fails applies op, expects a domain error of kind, with exactly msg when
// msg is not empty, and expects the stored state not to have changed.
func (f *fixture) fails(at time.Duration, op proto.Message, kind error, msg string) *storage.Error {
	f.t.Helper()
	before := dump(f.t, f.store)
	res := f.apply(at, op)
	e := wantErr(f.t, res.Err, kind, msg)
	after := dump(f.t, f.store)
	after.applied = before.applied // the index moves on; nothing else may
	sameState(f.t, before, after)
	return e
}

// wantErr checks that err is a *storage.Error of kind with message msg
// (when msg is not empty).
func wantErr(t testing.TB, err, kind error, msg string) *storage.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("got error %q (%v), want kind %v", err, errors.Unwrap(err), kind)
	}
	var e *storage.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is %T, want *storage.Error", err, err)
	}
	if msg != "" && e.Error() != msg {
		t.Fatalf("error message\n got: %s\nwant: %s", e.Error(), msg)
	}
	return e
}

func (f *fixture) secret(ref string) *storagev1.Secret {
	f.t.Helper()
	return mustSecret(f.t, f.store, ref)
}

func mustSecret(t testing.TB, s *storage.Store, ref string) *storagev1.Secret {
	t.Helper()
	sec, err := s.Secret(ref)
	if err != nil {
		t.Fatalf("Secret(%q): %v", ref, err)
	}
	return sec
}

func (f *fixture) value(ref, versionID, stage string) *storage.SecretValue {
	f.t.Helper()
	v, err := f.store.SecretValue(ref, versionID, stage)
	if err != nil {
		f.t.Fatalf("SecretValue(%q, %q, %q): %v", ref, versionID, stage, err)
	}
	return v
}

// labels maps every version id of sec to its labels, sorted; a deprecated
// version maps to an empty list.
func labels(sec *storagev1.Secret) map[string][]string {
	m := map[string][]string{}
	for _, v := range sec.GetVersions() {
		l := slices.Clone(v.GetStages())
		slices.Sort(l)
		if l == nil {
			l = []string{}
		}
		m[v.GetVersionId()] = l
	}
	return m
}

// L builds an expected labels map: L(1, "AWSCURRENT", 2, "AWSPREVIOUS,X", 3, "").
func L(pairs ...any) map[string][]string {
	m := map[string][]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		l := []string{}
		if s := pairs[i+1].(string); s != "" {
			l = strings.Split(s, ",")
		}
		slices.Sort(l)
		m[vid(pairs[i].(int))] = l
	}
	return m
}

func wantLabels(t testing.TB, sec *storagev1.Secret, want map[string][]string) {
	t.Helper()
	got := labels(sec)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("labels of %s\n got: %v\nwant: %v", sec.GetName(), got, want)
	}
}

func wantTime(t testing.TB, what string, got *timestamppb.Timestamp, want time.Time) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s is unset, want %v", what, want)
	}
	if !got.AsTime().Equal(want) {
		t.Fatalf("%s = %v, want %v", what, got.AsTime(), want)
	}
}

func wantUnset(t testing.TB, what string, got *timestamppb.Timestamp) {
	t.Helper()
	if got != nil {
		t.Fatalf("%s = %v, want unset", what, got.AsTime())
	}
}

func wantProto(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s\n got: %s\nwant: %s", what, prototext.Format(got), prototext.Format(want))
	}
}

func names(secs []*storagev1.Secret) []string {
	out := []string{}
	for _, s := range secs {
		out = append(out, s.GetName())
	}
	return out
}

// allNames lists every stored secret through Secrets.
func allNames(t testing.TB, s *storage.Store) []string {
	t.Helper()
	var out []string
	if err := s.Secrets(func(sec *storagev1.Secret) bool {
		out = append(out, sec.GetName())
		return true
	}); err != nil {
		t.Fatalf("Secrets: %v", err)
	}
	return out
}

// stateDump is everything a store holds, read back through the readers
// (and, for values of secrets the readers refuse, the test export).
type stateDump struct {
	applied uint64
	keyring *storagev1.Keyring
	secrets []*storagev1.Secret
	values  map[string]*storagev1.SealedValue // arn + " " + version id
}

func dump(t testing.TB, s *storage.Store) stateDump {
	t.Helper()
	d := stateDump{applied: s.AppliedIndex(), values: map[string]*storagev1.SealedValue{}}
	k, err := s.Keyring()
	if err != nil {
		t.Fatalf("Keyring: %v", err)
	}
	d.keyring = k
	if err := s.Secrets(func(sec *storagev1.Secret) bool {
		d.secrets = append(d.secrets, sec)
		return true
	}); err != nil {
		t.Fatalf("Secrets: %v", err)
	}
	for _, sec := range d.secrets {
		for _, id := range storage.StoredValueIDs(s, sec.GetArn()) {
			d.values[sec.GetArn()+" "+id] = storage.StoredValue(s, sec.GetArn(), id)
		}
		if sec.GetDeletedDate() != nil {
			continue
		}
		for _, v := range sec.GetVersions() {
			if !storage.HasValue(v) {
				continue // a rotation's AWSPENDING stub, before the function put a value
			}
			sv, err := s.SecretValue(sec.GetArn(), v.GetVersionId(), "")
			if err != nil {
				t.Fatalf("SecretValue(%s, %s): %v", sec.GetArn(), v.GetVersionId(), err)
			}
			if !proto.Equal(sv.Value, d.values[sec.GetArn()+" "+v.GetVersionId()]) {
				t.Fatalf("SecretValue(%s, %s) disagrees with the stored value", sec.GetArn(), v.GetVersionId())
			}
		}
	}
	if n := storage.StoredValueCount(s); n != len(d.values) {
		t.Fatalf("store holds %d values, but only %d belong to a secret", n, len(d.values))
	}
	return d
}

func sameState(t testing.TB, got, want stateDump) {
	t.Helper()
	if got.applied != want.applied {
		t.Fatalf("applied index = %d, want %d", got.applied, want.applied)
	}
	wantProto(t, "keyring", got.keyring, want.keyring)
	if len(got.secrets) != len(want.secrets) {
		t.Fatalf("secrets = %v, want %v", names(got.secrets), names(want.secrets))
	}
	for i := range got.secrets {
		wantProto(t, "secret "+want.secrets[i].GetName(), got.secrets[i], want.secrets[i])
	}
	if len(got.values) != len(want.values) {
		t.Fatalf("%d stored values, want %d", len(got.values), len(want.values))
	}
	for k, v := range want.values {
		wantProto(t, "value "+k, got.values[k], v)
	}
}

// mustPanic runs fn and fails unless it panics with a message containing want.
func mustPanic(t testing.TB, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("did not panic, want a panic mentioning %q", want)
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
			t.Fatalf("panic %q does not mention %q", msg, want)
		}
	}()
	fn()
}
