package storage_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/storage"
)

// fullResult sets every field of storage.Result, so that a field added to
// Result and left out of the codec fails the round trips below.
func fullResult(t *testing.T) *storage.Result {
	t.Helper()
	r := &storage.Result{
		Index: 42, ARN: arnOf("db", "AbCdEf"), Name: "db", VersionID: vid(7),
		Stages: []string{"AWSCURRENT", "blue"}, DeletionDate: base.Add(7 * day), Skipped: true,
		Err: &storage.Error{Kind: storage.ErrStageMismatch, Msg: "The stage does not match."},
	}
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullResult leaves Result.%s unset", v.Type().Field(i).Name)
		}
	}
	return r
}

func wantResult(t *testing.T, what string, got, want *storage.Result) {
	t.Helper()
	if got.Index != want.Index || got.ARN != want.ARN || got.Name != want.Name || got.VersionID != want.VersionID ||
		!slices.Equal(got.Stages, want.Stages) || !got.DeletionDate.Equal(want.DeletionDate) || got.Skipped != want.Skipped {
		t.Fatalf("%s\n got: %+v\nwant: %+v", what, got, want)
	}
	var ge, we *storage.Error
	if errors.As(want.Err, &we) {
		if !errors.As(got.Err, &ge) || ge.Kind != we.Kind || ge.Msg != we.Msg {
			t.Fatalf("%s: error %v (%T), want %v of kind %v", what, got.Err, got.Err, want.Err, we.Kind)
		}
	} else if (got.Err == nil) != (want.Err == nil) || got.Err != nil && got.Err.Error() != want.Err.Error() {
		t.Fatalf("%s: error %v, want %v", what, got.Err, want.Err)
	}
}

// TestResultFormats pins both messages that carry a Result to what older
// builds write and read: a forwarded write's answer (ApplyResult, between
// nodes of different builds) and a remembered proposal (AppliedProposal, in
// state files and snapshots).
func TestResultFormats(t *testing.T) {
	full := fullResult(t)
	kind := storage.KindNumber(full.Err)

	wire := &replicationv1.ApplyResult{
		Index: 42, Arn: full.ARN, Name: "db", VersionId: vid(7), Stages: []string{"AWSCURRENT", "blue"},
		DeletionDate: timestamppb.New(base.Add(7 * day)), Skipped: true, ErrorKind: kind, ErrorMessage: full.Err.Error(),
	}
	got := &replicationv1.ApplyResult{}
	storage.EncodeResult(full, got)
	wantProto(t, "ApplyResult", got, wire)
	wantResult(t, "ApplyResult decoded", storage.DecodeResult(wire), full)

	remembered := *full
	remembered.Skipped = false // a skipped entry is never remembered
	stored := &storagev1.AppliedProposal{
		Index: 42, Arn: full.ARN, Name: "db", VersionId: vid(7), Stages: []string{"AWSCURRENT", "blue"},
		DeletionDate: timestamppb.New(base.Add(7 * day)), ErrorKind: kind, ErrorMessage: full.Err.Error(),
	}
	gotStored := &storagev1.AppliedProposal{}
	storage.EncodeResult(&remembered, gotStored)
	wantProto(t, "AppliedProposal", gotStored, stored)
	wantResult(t, "AppliedProposal decoded", storage.DecodeResult(stored), &remembered)
}

func TestResultZeroAndUnknownKind(t *testing.T) {
	for _, m := range []proto.Message{&replicationv1.ApplyResult{}, &storagev1.AppliedProposal{}} {
		storage.EncodeResult(&storage.Result{}, m)
		if b, err := proto.Marshal(m); err != nil || len(b) != 0 {
			t.Fatalf("an empty result encodes as %x (%v) in %T, want nothing", b, err, m)
		}
		wantResult(t, "empty", storage.DecodeResult(m), &storage.Result{})
	}
	// A newer build's kind: still a failure, with its message.
	newer := &replicationv1.ApplyResult{ErrorKind: uint32(len(storage.Sentinels()) + 1), ErrorMessage: "A newer refusal."}
	r := storage.DecodeResult(newer)
	if r.Err == nil || r.Err.Error() != "A newer refusal." || storage.KindNumber(r.Err) != 0 {
		t.Fatalf("unknown kind decodes to %v (kind %d), want a plain error with its message", r.Err, storage.KindNumber(r.Err))
	}
	wire := &replicationv1.ApplyResult{}
	storage.EncodeResult(&storage.Result{Err: errors.New("not a domain failure")}, wire)
	wantProto(t, "a plain error", wire, &replicationv1.ApplyResult{ErrorMessage: "not a domain failure"})
}

func TestResultPartWithoutFieldPanics(t *testing.T) {
	mustPanic(t, "skipped", func() {
		storage.EncodeResult(&storage.Result{Skipped: true}, &storagev1.AppliedProposal{})
	})
}
