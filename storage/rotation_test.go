package storage_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
)

const (
	fnARN         = "arn:aws:lambda:eu-west-1:123456789012:function:rot"
	msgInProgress = "A previous rotation isn't complete. That rotation will be reattempted."
)

func days(n int64) *cofferv1.RotationRules {
	return &cofferv1.RotationRules{AutomaticallyAfterDays: &n}
}

func rotateOp(arn string, token int, testOnly bool) *raftv1.ConfigureRotation {
	return &raftv1.ConfigureRotation{Arn: arn, RotationLambdaArn: fnARN, RotationRules: days(30), Token: vid(token), TestOnly: testOnly}
}

func stepOp(arn string, token int, step, failure string, retryAt time.Duration) *raftv1.RecordRotationStep {
	op := &raftv1.RecordRotationStep{Arn: arn, Token: vid(token), Step: step, Error: failure}
	if failure != "" {
		op.NextAttempt = timestamppb.New(base.Add(retryAt))
	}
	return op
}

func stagesOf(s *storagev1.Secret, id int) []string {
	for _, v := range s.GetVersions() {
		if v.GetVersionId() == vid(id) {
			return v.GetStages()
		}
	}
	return nil
}

// TestRotationRunsStepsInOrder walks one rotation through the state
// machine: each success advances the step, a failure goes back to the
// first step with the error kept, and the end clears the progress and
// stamps LastRotatedDate.
func TestRotationRunsStepsInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("db", "AbC123")
	f.ok(0, createWithValue("db", "AbC123", 1, "v1"))
	res := f.ok(time.Minute, rotateOp(arn, 2, false))
	if res.VersionID != vid(2) {
		t.Fatalf("ConfigureRotation VersionID = %q, want the token", res.VersionID)
	}
	want := &storagev1.RotationProgress{
		Token: vid(2), Step: storage.StepCreateSecret, FunctionArn: fnARN,
		StartedDate: timestamppb.New(base.Add(time.Minute)), NextAttemptDate: timestamppb.New(base.Add(time.Minute)),
	}
	sec := f.secret("db")
	wantProto(t, "progress after RotateSecret", sec.GetRotationProgress(), want)
	if !sec.GetRotationEnabled() || sec.GetRotationLambdaArn() != fnARN || sec.GetRotationRules().GetAutomaticallyAfterDays() != 30 {
		t.Fatalf("rotation settings not stored: %v", sec)
	}

	if sec := f.secret("db"); !slices.Equal(stagesOf(sec, 2), []string{storage.StagePending}) || storage.HasValue(sec.GetVersions()[1]) {
		t.Fatalf("RotateSecret did not create the value-less AWSPENDING version: %v", sec.GetVersions())
	}
	_, err := f.store.SecretValue(arn, vid(2), storage.StagePending)
	wantErr(t, err, storage.ErrVersionNotFound, "Secrets Manager can't find the specified secret value for VersionId: "+vid(2))
	f.fails(2*time.Minute, moveOp(arn, storage.StageCurrent, 2, 1), storage.ErrInvalidParameter,
		"You can't move staging label AWSCURRENT to version "+vid(2)+" because it has no secret value yet.")
	f.ok(2*time.Minute, stepOp(arn, 2, storage.StepCreateSecret, "", 0))
	f.ok(3*time.Minute, putOp(arn, 2, "v2", storage.StagePending))
	if v := f.value(arn, vid(2), storage.StagePending); !storage.HasValue(v.Version) {
		t.Fatal("PutSecretValue did not fill the AWSPENDING version")
	}
	f.ok(4*time.Minute, stepOp(arn, 2, storage.StepSetSecret, "", 0))
	// setSecret fails: back to createSecret, with the error, after the backoff.
	res = f.ok(5*time.Minute, stepOp(arn, 2, storage.StepTestSecret, "HTTP 500: login failed", 10*time.Minute))
	if res.VersionID != vid(2) {
		t.Fatalf("failure record VersionID = %q, want the token", res.VersionID)
	}
	want.Step, want.Attempts = storage.StepCreateSecret, 1
	want.LastError, want.LastErrorStep, want.LastErrorDate = "HTTP 500: login failed", storage.StepTestSecret, timestamppb.New(base.Add(5*time.Minute))
	want.NextAttemptDate = timestamppb.New(base.Add(10 * time.Minute))
	wantProto(t, "progress after a failure", f.secret("db").GetRotationProgress(), want)

	for i, step := range []string{storage.StepCreateSecret, storage.StepSetSecret, storage.StepTestSecret} {
		f.ok(time.Duration(11+i)*time.Minute, stepOp(arn, 2, step, "", 0))
	}
	if got := f.secret("db").GetRotationProgress().GetStep(); got != storage.StepFinishSecret {
		t.Fatalf("step = %q, want finishSecret", got)
	}
	f.ok(15*time.Minute, moveOp(arn, storage.StageCurrent, 2, 1))
	f.ok(16*time.Minute, stepOp(arn, 2, storage.StepFinishSecret, "", 0))
	sec = f.secret("db")
	if sec.GetRotationProgress() != nil {
		t.Fatalf("progress after finishSecret = %v, want none", sec.GetRotationProgress())
	}
	if !sec.GetLastRotatedDate().AsTime().Equal(base.Add(16*time.Minute)) || !sec.GetRotationAnchorDate().AsTime().Equal(base.Add(16*time.Minute)) {
		t.Fatalf("LastRotatedDate %v, anchor %v, want both at +16m", sec.GetLastRotatedDate().AsTime(), sec.GetRotationAnchorDate().AsTime())
	}
	if !slices.Equal(stagesOf(sec, 2), []string{storage.StageCurrent}) || !slices.Equal(stagesOf(sec, 1), []string{storage.StagePrevious}) {
		t.Fatalf("stages v1 %v v2 %v", stagesOf(sec, 1), stagesOf(sec, 2))
	}
	// The next rotation may start.
	f.ok(17*time.Minute, rotateOp(arn, 3, false))
}

// TestRotationStaleReportsIgnored: a report for another token, or for a
// step the rotation is past (a deposed leader's), changes nothing.
func TestRotationStaleReportsIgnored(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("db", "AbC123")
	f.ok(0, createWithValue("db", "AbC123", 1, "v1"))
	f.ok(time.Minute, rotateOp(arn, 2, false))
	f.ok(2*time.Minute, stepOp(arn, 2, storage.StepCreateSecret, "", 0))
	before := f.secret("db")
	for _, op := range []*raftv1.RecordRotationStep{
		stepOp(arn, 2, storage.StepCreateSecret, "late failure", time.Hour),
		stepOp(arn, 9, storage.StepSetSecret, "", 0),
		stepOp(arn, 2, storage.StepFinishSecret, "", 0),
	} {
		if res := f.ok(3*time.Minute, op); res.VersionID != "" {
			t.Fatalf("stale report %v answered with VersionID %q", op, res.VersionID)
		}
	}
	wantProto(t, "secret after stale reports", f.secret("db"), before)
}

// TestFinishWithoutMovingCurrentFails: finishSecret that returns without
// AWSCURRENT on the new version is a failure, recorded as such.
func TestFinishWithoutMovingCurrentFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("db", "AbC123")
	f.ok(0, createWithValue("db", "AbC123", 1, "v1"))
	f.ok(time.Minute, rotateOp(arn, 2, false))
	for _, step := range []string{storage.StepCreateSecret, storage.StepSetSecret, storage.StepTestSecret} {
		f.ok(2*time.Minute, stepOp(arn, 2, step, "", 0))
	}
	f.ok(3*time.Minute, &raftv1.RecordRotationStep{Arn: arn, Token: vid(2), Step: storage.StepFinishSecret, NextAttempt: timestamppb.New(base.Add(time.Hour))})
	p := f.secret("db").GetRotationProgress()
	if p.GetAttempts() != 1 || p.GetStep() != storage.StepCreateSecret || p.GetLastErrorStep() != storage.StepFinishSecret ||
		p.GetLastError() != "finishSecret returned without moving AWSCURRENT to version "+vid(2)+"." {
		t.Fatalf("progress = %v", p)
	}
}

// TestRotateRefusedWhileInProgress covers AWS's refusal and its
// exceptions: the same token asks for a retry now; AWSPENDING on the
// current version is no rotation.
func TestRotateRefusedWhileInProgress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("db", "AbC123")
	f.ok(0, createWithValue("db", "AbC123", 1, "v1"))
	f.fails(time.Minute, &raftv1.ConfigureRotation{Arn: arn, Token: vid(2)}, storage.ErrNoRotationFunction,
		"No Lambda rotation function ARN is associated with this secret.")
	f.ok(time.Minute, rotateOp(arn, 2, false))
	f.fails(2*time.Minute, rotateOp(arn, 3, false), storage.ErrRotationInProgress, msgInProgress)
	f.ok(3*time.Minute, stepOp(arn, 2, storage.StepCreateSecret, "boom", time.Hour))
	res := f.ok(4*time.Minute, rotateOp(arn, 2, false))
	if res.VersionID != vid(2) || !f.secret("db").GetRotationProgress().GetNextAttemptDate().AsTime().Equal(base.Add(4*time.Minute)) {
		t.Fatalf("same-token RotateSecret did not ask for an attempt now: %v", f.secret("db").GetRotationProgress())
	}

	// Cancel: rotation off, progress gone, the token named; AWSPENDING on
	// a non-current version still refuses a new rotation, as in AWS.
	f.ok(5*time.Minute, putOp(arn, 2, "v2", storage.StagePending))
	res = f.ok(6*time.Minute, &raftv1.CancelRotation{Arn: arn})
	sec := f.secret("db")
	if res.VersionID != vid(2) || sec.GetRotationEnabled() || sec.GetRotationProgress() != nil || sec.GetRotationLambdaArn() != fnARN {
		t.Fatalf("after cancel: result %q, secret %v", res.VersionID, sec)
	}
	f.fails(7*time.Minute, rotateOp(arn, 3, false), storage.ErrRotationInProgress, msgInProgress)
	if res := f.ok(7*time.Minute, &raftv1.StartRotation{Arn: arn, Token: vid(3)}); res.VersionID != "" {
		t.Fatal("a scheduled start went ahead with rotation off")
	}
	f.ok(8*time.Minute, moveOp(arn, storage.StagePending, 0, 2))
	f.ok(9*time.Minute, rotateOp(arn, 3, true))
	if p := f.secret("db").GetRotationProgress(); !p.GetTestOnly() || p.GetStep() != storage.StepTestSecret {
		t.Fatalf("test-only progress = %v", p)
	}
	if res := f.ok(10*time.Minute, &raftv1.StartRotation{Arn: arn, Token: vid(4)}); res.VersionID != "" {
		t.Fatal("a scheduled start went ahead during a test run")
	}
	f.ok(11*time.Minute, stepOp(arn, 3, storage.StepTestSecret, "", 0))
	sec = f.secret("db")
	if sec.GetRotationProgress() != nil || sec.GetLastRotatedDate() != nil {
		t.Fatalf("a passed test left progress %v or a LastRotatedDate %v", sec.GetRotationProgress(), sec.GetLastRotatedDate())
	}
	if res := f.ok(12*time.Minute, &raftv1.StartRotation{Arn: arn, Token: vid(4)}); res.VersionID != vid(4) {
		t.Fatal("a scheduled start did not go ahead")
	}
}

// TestManualWriteMovesScheduleAnchor: a write that moves AWSCURRENT counts
// as a rotation for the schedule; one that only adds AWSPENDING does not.
func TestManualWriteMovesScheduleAnchor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	arn := arnOf("db", "AbC123")
	f.ok(0, createWithValue("db", "AbC123", 1, "v1"))
	f.ok(time.Minute, rotateOp(arn, 2, true))
	f.ok(2*time.Minute, stepOp(arn, 2, storage.StepTestSecret, "", 0))
	anchor := func() time.Time { return f.secret("db").GetRotationAnchorDate().AsTime() }
	if !anchor().Equal(base.Add(time.Minute)) {
		t.Fatalf("anchor %v, want the RotateSecret time", anchor())
	}
	f.ok(day, putOp(arn, 3, "v3", storage.StagePending))
	if !anchor().Equal(base.Add(time.Minute)) {
		t.Fatalf("an AWSPENDING put moved the anchor to %v", anchor())
	}
	f.ok(2*day, putOp(arn, 4, "v4"))
	if !anchor().Equal(base.Add(2 * day)) {
		t.Fatalf("anchor %v after a manual put, want +2d", anchor())
	}
	f.ok(3*day, moveOp(arn, storage.StageCurrent, 3, 4))
	if !anchor().Equal(base.Add(3 * day)) {
		t.Fatalf("anchor %v after moving AWSCURRENT, want +3d", anchor())
	}
}

func TestRotationFunctionRegistry(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	fn := &storagev1.RotationFunction{Name: "rot", Arn: fnARN, Url: "https://rot.example/hook", SealedSecret: sealed("s3cret"),
		CreatedDate: timestamppb.New(base)}
	f.ok(0, &raftv1.RegisterRotationFunction{Function: fn})
	for _, ref := range []string{"rot", fnARN} {
		got, err := f.store.RotationFunction(ref)
		if err != nil {
			t.Fatal(err)
		}
		wantProto(t, "function by "+ref, got, fn)
	}
	if got, _ := f.store.RotationFunction("arn:aws:lambda:eu-west-1:999999999999:function:rot"); got != nil {
		t.Fatal("another account's ARN resolved to the function")
	}
	f.ok(time.Minute, &raftv1.RegisterRotationFunction{Function: &storagev1.RotationFunction{Name: "a", Arn: "arn:x:function:a", Url: "http://a"}})
	list, err := f.store.RotationFunctions()
	if err != nil || len(list) != 2 || list[0].GetName() != "a" || list[1].GetName() != "rot" {
		t.Fatalf("RotationFunctions = %v, %v", list, err)
	}
	f.ok(2*time.Minute, &raftv1.DeregisterRotationFunction{Name: "rot"})
	f.fails(3*time.Minute, &raftv1.DeregisterRotationFunction{Name: "rot"}, storage.ErrFunctionNotFound, "No rotation function named rot.")
	if got, _ := f.store.RotationFunction("rot"); got != nil {
		t.Fatal("deregistered function still resolves")
	}
}
