package storage

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// The rotation steps as the state machine records them. They are the AWS
// Lambda step names; server/rotation owns the protocol, this package only
// keeps the progress.
const (
	StepCreateSecret = "createSecret"
	StepSetSecret    = "setSecret"
	StepTestSecret   = "testSecret"
	StepFinishSecret = "finishSecret"
)

var rotationSteps = []string{StepCreateSecret, StepSetSecret, StepTestSecret, StepFinishSecret}

// RotationInProgress reports whether s has a rotation that has not finished:
// a recorded one, or AWSPENDING on a version that is not AWSCURRENT (a
// rotation cancelled half-way, or an AWSPENDING label set by hand), which
// is what AWS checks.
func RotationInProgress(s *storagev1.Secret) bool {
	if s.GetRotationProgress() != nil {
		return true
	}
	p := stageHolder(s, StagePending)
	return p != nil && !slices.Contains(p.GetStages(), StageCurrent)
}

func errRotationInProgress() *Error {
	return newError(ErrRotationInProgress, "A previous rotation isn't complete. That rotation will be reattempted.")
}

// configureRotation is RotateSecret: store the settings and start a
// rotation (or a test-only run) with the token. Repeating the call with the
// token of the rotation in progress asks for its next attempt now.
func (t *txn) configureRotation(now time.Time, op *raftv1.ConfigureRotation) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if op.GetToken() == "" {
		panic("storage: ConfigureRotation command without a token")
	}
	if op.GetRotationLambdaArn() == "" && s.GetRotationLambdaArn() == "" {
		return &Result{Err: newError(ErrNoRotationFunction, "No Lambda rotation function ARN is associated with this secret.")}
	}
	if p := s.GetRotationProgress(); p != nil && p.GetToken() == op.GetToken() {
		p.NextAttemptDate = timestamppb.New(now)
		t.putSecret(s)
		return &Result{ARN: s.GetArn(), Name: s.GetName(), VersionID: p.GetToken()}
	}
	if RotationInProgress(s) {
		return &Result{Err: errRotationInProgress()}
	}
	if op.GetRotationLambdaArn() != "" {
		s.RotationLambdaArn = op.GetRotationLambdaArn()
	}
	if op.GetRotationRules() != nil {
		s.RotationRules = proto.CloneOf(op.GetRotationRules())
	}
	s.RotationEnabled = true
	s.RotationAnchorDate = timestamppb.New(now)
	s.RotationProgress = newProgress(now, s, op.GetToken(), op.GetTestOnly())
	s.LastChangedDate = timestamppb.New(now)
	if err := t.stub(now, s, op.GetToken()); err != nil {
		return &Result{Err: err}
	}
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName(), VersionID: op.GetToken()}
}

// stub creates the rotation's AWSPENDING version and deletes the values of
// any versions that pruning dropped to make room.
func (t *txn) stub(now time.Time, s *storagev1.Secret, token string) *Error {
	pruned, err := pendingStub(now, s, token, t.quota)
	if err != nil {
		return err
	}
	for _, id := range pruned {
		t.deleteValue(s.GetArn(), id)
	}
	return nil
}

func newProgress(now time.Time, s *storagev1.Secret, token string, testOnly bool) *storagev1.RotationProgress {
	step := StepCreateSecret
	if testOnly {
		step = StepTestSecret
	}
	return &storagev1.RotationProgress{
		Token: token, Step: step, TestOnly: testOnly, FunctionArn: s.GetRotationLambdaArn(),
		StartedDate: timestamppb.New(now), NextAttemptDate: timestamppb.New(now),
	}
}

// startRotation starts a scheduled rotation. The leader decided it was due
// from its own reading of the state; if that changed before the command
// committed (rotation cancelled, a rotation started), it is a no-op, shown
// by an empty VersionID.
func (t *txn) startRotation(now time.Time, op *raftv1.StartRotation) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if !s.GetRotationEnabled() || s.GetRotationLambdaArn() == "" || RotationInProgress(s) {
		return &Result{ARN: s.GetArn(), Name: s.GetName()}
	}
	s.RotationProgress = newProgress(now, s, op.GetToken(), false)
	if err := t.stub(now, s, op.GetToken()); err != nil {
		return &Result{Err: err}
	}
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName(), VersionID: op.GetToken()}
}

// recordRotationStep advances a rotation after a step succeeded, or records
// the failure and sends the rotation back to its first step (AWS retries the
// whole rotation; the steps are idempotent per token). A report for another
// token or step — a deposed leader's late one — changes nothing and is
// answered with an empty VersionID.
func (t *txn) recordRotationStep(now time.Time, op *raftv1.RecordRotationStep) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	p := s.GetRotationProgress()
	if p == nil || p.GetToken() != op.GetToken() || p.GetStep() != op.GetStep() {
		return &Result{ARN: s.GetArn(), Name: s.GetName()}
	}
	res := &Result{ARN: s.GetArn(), Name: s.GetName(), VersionID: p.GetToken()}
	failure := op.GetError()
	if failure == "" && op.GetStep() == StepFinishSecret && !p.GetTestOnly() {
		if v := stageHolder(s, StageCurrent); v == nil || v.GetVersionId() != p.GetToken() {
			failure = fmt.Sprintf("finishSecret returned without moving AWSCURRENT to version %s.", p.GetToken())
		}
	}
	if failure != "" {
		p.Attempts++
		p.LastError, p.LastErrorStep, p.LastErrorDate = failure, op.GetStep(), timestamppb.New(now)
		p.NextAttemptDate = op.GetNextAttempt()
		p.Step = StepCreateSecret
		if p.GetTestOnly() {
			p.Step = StepTestSecret
		}
		t.putSecret(s)
		return res
	}
	last := op.GetStep() == StepFinishSecret || (p.GetTestOnly() && op.GetStep() == StepTestSecret)
	if !last {
		p.Step = rotationSteps[slices.Index(rotationSteps, op.GetStep())+1]
		p.NextAttemptDate = timestamppb.New(now)
		t.putSecret(s)
		return res
	}
	s.RotationProgress = nil
	if p.GetTestOnly() {
		// The test's AWSPENDING copy is done with, as AWS removes it.
		if v := findVersion(s, p.GetToken()); v != nil && !slices.Contains(v.GetStages(), StageCurrent) {
			removeStage(v, StagePending)
		}
	} else {
		// The new AWSCURRENT keeps no AWSPENDING: left there, a later
		// manual write would strand it on a non-current version and block
		// every rotation after.
		if v := findVersion(s, p.GetToken()); v != nil {
			removeStage(v, StagePending)
		}
		s.LastRotatedDate = timestamppb.New(now)
		s.RotationAnchorDate = timestamppb.New(now)
		s.LastChangedDate = timestamppb.New(now)
	}
	t.putSecret(s)
	return res
}

// cancelRotation is CancelRotateSecret: rotation off, the rotation in
// progress dropped. Its AWSPENDING version stays for the caller to inspect
// and clean up, as in AWS; the result names it.
func (t *txn) cancelRotation(now time.Time, op *raftv1.CancelRotation) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	res := &Result{ARN: s.GetArn(), Name: s.GetName()}
	if p := s.GetRotationProgress(); p != nil {
		res.VersionID = p.GetToken()
	} else if v := stageHolder(s, StagePending); v != nil && !slices.Contains(v.GetStages(), StageCurrent) {
		res.VersionID = v.GetVersionId()
	}
	s.RotationEnabled = false
	s.RotationProgress = nil
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return res
}

// noteCurrentMoved records that a write moved AWSCURRENT outside a
// rotation: AWS counts a manual change of the value as a rotation when it
// computes the next one.
func noteCurrentMoved(now time.Time, s *storagev1.Secret) {
	if s.GetRotationProgress() == nil {
		s.RotationAnchorDate = timestamppb.New(now)
	}
}

func (t *txn) registerRotationFunction(op *raftv1.RegisterRotationFunction) *Result {
	f := op.GetFunction()
	if f.GetName() == "" || f.GetArn() == "" || f.GetUrl() == "" {
		panic("storage: RegisterRotationFunction command without name, ARN or URL")
	}
	t.countWrap(f.GetSealedSecret())
	t.put(t.tx.Bucket(bucketRotationFunctions), []byte(f.GetName()), f)
	return &Result{Name: f.GetName(), ARN: f.GetArn()}
}

func (t *txn) deregisterRotationFunction(op *raftv1.DeregisterRotationFunction) *Result {
	b := t.tx.Bucket(bucketRotationFunctions)
	v := b.Get([]byte(op.GetName()))
	if v == nil {
		return &Result{Err: newError(ErrFunctionNotFound, "No rotation function named %s.", op.GetName())}
	}
	f := decodeFunction([]byte(op.GetName()), v)
	t.fail(b.Delete([]byte(op.GetName())))
	return &Result{Name: f.GetName(), ARN: f.GetArn()}
}

func decodeFunction(k, v []byte) *storagev1.RotationFunction {
	f := &storagev1.RotationFunction{}
	if err := proto.Unmarshal(v, f); err != nil {
		panic(fmt.Sprintf("storage: corrupt rotation function record %q: %v", k, err))
	}
	return f
}

// RotationFunction returns the registered function with that name, or the
// one whose ARN is ref; nil when there is none.
func (s *Store) RotationFunction(ref string) (*storagev1.RotationFunction, error) {
	var out *storagev1.RotationFunction
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRotationFunctions)
		name := ref
		if i := strings.LastIndex(ref, ":function:"); strings.HasPrefix(ref, "arn:") && i >= 0 {
			name = ref[i+len(":function:"):]
		}
		if v := b.Get([]byte(name)); v != nil {
			if f := decodeFunction([]byte(name), v); f.GetName() == ref || f.GetArn() == ref {
				out = f
			}
		}
		return nil
	})
	return out, err
}

// RotationFunctions lists the registered functions by name.
func (s *Store) RotationFunctions() ([]*storagev1.RotationFunction, error) {
	var out []*storagev1.RotationFunction
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRotationFunctions).ForEach(func(k, v []byte) error {
			out = append(out, decodeFunction(k, v))
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, err
}
