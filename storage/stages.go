package storage

import (
	"bytes"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// deprecatedRetention is how long an unlabeled version is kept past the
// 100-version mark: AWS "keeps all versions created in the last 24 hours".
const deprecatedRetention = 24 * time.Hour

// HasValue reports whether v holds a value. The version a rotation starts
// with has none until the rotation function puts one: AWS creates it, with
// AWSPENDING, before the first step.
func HasValue(v *storagev1.Version) bool { return len(v.GetFingerprint()) > 0 }

// pendingStub puts AWSPENDING on the version token names, creating it
// without a value when it does not exist, as AWS does when a rotation
// starts. A version already AWSCURRENT is left alone.
func pendingStub(now time.Time, s *storagev1.Secret, token string, quota int) ([]string, *Error) {
	v := findVersion(s, token)
	if v != nil {
		if !slices.Contains(v.GetStages(), StageCurrent) {
			attachStage(s, StagePending, v)
		}
		return nil, nil
	}
	v = &storagev1.Version{VersionId: token, CreatedDate: timestamppb.New(now)}
	s.Versions = append(s.Versions, v)
	attachStage(s, StagePending, v)
	return pruneVersions(now, s, quota)
}

// fillVersion gives a value-less version (a rotation's AWSPENDING stub) the
// value a rotation function put, with labels.
func fillVersion(s *storagev1.Secret, v *storagev1.Version, nv *raftv1.NewVersion, labels []string) *Error {
	if len(slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(v.GetStages()), labels...))))) > MaxStagesPerVersion {
		return newError(ErrLimitExceeded, "A version can have at most %d staging labels.", MaxStagesPerVersion)
	}
	v.KmsKeyId, v.Fingerprint = nv.GetValue().GetKmsKeyId(), nv.GetValue().GetFingerprint()
	for _, l := range labels {
		attachStage(s, l, v)
	}
	return nil
}

func findVersion(s *storagev1.Secret, id string) *storagev1.Version {
	for _, v := range s.GetVersions() {
		if v.GetVersionId() == id {
			return v
		}
	}
	return nil
}

// stageHolder returns the version carrying label, or nil.
func stageHolder(s *storagev1.Secret, label string) *storagev1.Version {
	for _, v := range s.GetVersions() {
		if slices.Contains(v.GetStages(), label) {
			return v
		}
	}
	return nil
}

func removeStage(v *storagev1.Version, label string) {
	v.Stages = slices.DeleteFunc(v.Stages, func(s string) bool { return s == label })
}

// attachStage puts label on target, taking it off whichever version had it.
// Moving AWSCURRENT moves AWSPREVIOUS to the version AWSCURRENT left, as AWS
// does; that includes taking AWSPREVIOUS off target when rolling back. The
// version AWSCURRENT leaves also loses AWSPENDING: a rotation's version
// keeps AWSPENDING beside AWSCURRENT once promoted, and AWS leaves it with
// only AWSPREVIOUS when the next value supersedes it.
func attachStage(s *storagev1.Secret, label string, target *storagev1.Version) {
	holder := stageHolder(s, label)
	if holder == target {
		return
	}
	if holder != nil {
		removeStage(holder, label)
	}
	target.Stages = append(target.Stages, label)
	if label == StageCurrent && holder != nil {
		removeStage(holder, StagePending)
		attachStage(s, StagePrevious, holder)
	}
}

// detachStage takes label off whichever version has it.
func detachStage(s *storagev1.Secret, label string) {
	if h := stageHolder(s, label); h != nil {
		removeStage(h, label)
	}
}

// idempotentVersion answers a retried ClientRequestToken: the version the
// token names when its fingerprint matches, ErrTokenInUse when it does not,
// and (nil, nil) when the token is new.
func idempotentVersion(s *storagev1.Secret, nv *raftv1.NewVersion) (*storagev1.Version, *Error) {
	v := findVersion(s, nv.GetVersionId())
	if v == nil || !HasValue(v) {
		return nil, nil
	}
	if !bytes.Equal(v.GetFingerprint(), nv.GetValue().GetFingerprint()) {
		return nil, errTokenInUse(nv.GetVersionId(), s.GetArn())
	}
	return v, nil
}

// addVersion appends a new version carrying labels, moves the labels to it,
// and prunes deprecated versions to stay within quota. It changes s only;
// the caller writes s and the value, and deletes the values of the pruned
// versions it returns.
func addVersion(now time.Time, s *storagev1.Secret, nv *raftv1.NewVersion, labels []string, quota int) (*storagev1.Version, []string, *Error) {
	// AWS attaches AWSCURRENT to a secret's first version whatever labels
	// the request names, so a secret with versions always has a current one.
	if len(s.GetVersions()) == 0 && !slices.Contains(labels, StageCurrent) {
		labels = append(slices.Clone(labels), StageCurrent)
	}
	if len(labels) > MaxStagesPerVersion {
		return nil, nil, newError(ErrLimitExceeded, "A version can have at most %d staging labels.", MaxStagesPerVersion)
	}
	v := &storagev1.Version{
		VersionId:   nv.GetVersionId(),
		CreatedDate: timestamppb.New(now),
		KmsKeyId:    nv.GetValue().GetKmsKeyId(),
		Fingerprint: nv.GetValue().GetFingerprint(),
	}
	s.Versions = append(s.Versions, v)
	for _, l := range labels {
		attachStage(s, l, v)
	}
	pruned, err := pruneVersions(now, s, quota)
	if err != nil {
		return nil, nil, err
	}
	return v, pruned, nil
}

// versionQuota is the versions-per-secret quota a command carries: 0 (a
// command from before the quota was configurable) means MaxVersions, and a
// value outside MinVersionsQuota..MaxVersions, which no correct proposer
// sends, is held to that range, the same way on every replica.
func versionQuota(n uint32) int {
	switch {
	case n == 0 || n > MaxVersions:
		return MaxVersions
	case n < MinVersionsQuota:
		return MinVersionsQuota
	}
	return int(n)
}

// pruneVersions keeps a secret at quota versions, as AWS keeps it at 100:
// unlabeled versions older than 24 hours go first, oldest first. When
// every version over the quota is labeled or younger than that, the new
// version is refused with LimitExceededException, so a writer faster than
// the 24 hours let versions expire cannot grow the secret further.
func pruneVersions(now time.Time, s *storagev1.Secret, quota int) ([]string, *Error) {
	excess := len(s.Versions) - quota
	if excess <= 0 {
		return nil, nil
	}
	cutoff := now.Add(-deprecatedRetention)
	var pruned []string
	kept := s.Versions[:0:0]
	for _, v := range s.Versions {
		if excess > 0 && len(v.GetStages()) == 0 && !v.GetCreatedDate().AsTime().After(cutoff) {
			pruned = append(pruned, v.GetVersionId())
			excess--
			continue
		}
		kept = append(kept, v)
	}
	if excess > 0 {
		return nil, newError(ErrLimitExceeded,
			"You have exceeded the maximum number of versions (%d) for secret %s; unlabeled versions are removed once they are older than 24 hours.",
			quota, s.GetArn())
	}
	s.Versions = kept
	return pruned, nil
}
