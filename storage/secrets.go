package storage

import (
	"bytes"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func (t *txn) createSecret(now time.Time, op *raftv1.CreateSecret) *Result {
	if existing := t.secret(op.GetName()); existing != nil {
		if existing.GetDeletedDate() != nil {
			return &Result{Err: newError(ErrMarkedForDeletion,
				"You can't create this secret because a secret with this name is already scheduled for deletion.")}
		}
		// A retry of the same CreateSecret (same token, same value) succeeds
		// with the first answer; the same token with another value does not.
		if op.GetVersion() != nil {
			v, err := idempotentVersion(existing, op.GetVersion())
			if err != nil {
				return &Result{Err: err}
			}
			if v != nil {
				return &Result{ARN: existing.GetArn(), Name: existing.GetName(), VersionID: v.GetVersionId(), Stages: v.GetStages()}
			}
		}
		if op.GetVersion() == nil && op.GetClientRequestToken() != "" && op.GetClientRequestToken() == existing.GetCreateRequestToken() {
			return &Result{ARN: existing.GetArn(), Name: existing.GetName()}
		}
		return &Result{Err: newError(ErrSecretExists, "The operation failed because the secret %s already exists.", op.GetName())}
	}
	if !ValidName(op.GetName()) || op.GetArn() == "" {
		panic("storage: CreateSecret command with an invalid name or no ARN")
	}
	s := &storagev1.Secret{
		Name:            op.GetName(),
		Arn:             op.GetArn(),
		Description:     op.GetDescription(),
		KmsKeyId:        op.GetKmsKeyId(),
		CreatedDate:     timestamppb.New(now),
		LastChangedDate: timestamppb.New(now),
		PrimaryRegion:   op.GetPrimaryRegion(),

		CreateRequestToken: op.GetClientRequestToken(),
	}
	if err := mergeTags(s, op.GetTags()); err != nil {
		return &Result{Err: err}
	}
	res := &Result{ARN: s.GetArn(), Name: s.GetName()}
	if nv := op.GetVersion(); nv != nil {
		v, _, err := addVersion(now, s, nv, []string{StageCurrent}, t.quota)
		if err != nil {
			return &Result{Err: err}
		}
		t.putValue(s.GetArn(), v.GetVersionId(), nv.GetValue())
		res.VersionID, res.Stages = v.GetVersionId(), slices.Clone(v.GetStages())
	}
	t.putSecret(s)
	return res
}

func (t *txn) putSecretValue(now time.Time, op *raftv1.PutSecretValue) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	labels := op.GetVersionStages()
	if len(labels) == 0 {
		labels = []string{StageCurrent}
	}
	return t.newVersion(now, s, op.GetVersion(), labels)
}

// newVersion adds nv to s with labels, or answers an idempotent retry.
func (t *txn) newVersion(now time.Time, s *storagev1.Secret, nv *raftv1.NewVersion, labels []string) *Result {
	if v, err := idempotentVersion(s, nv); err != nil {
		return &Result{Err: err}
	} else if v != nil {
		return &Result{ARN: s.GetArn(), Name: s.GetName(), VersionID: v.GetVersionId(), Stages: slices.Clone(v.GetStages())}
	}
	var pruned []string
	v := findVersion(s, nv.GetVersionId())
	if v != nil { // a rotation's value-less AWSPENDING stub
		if err := fillVersion(s, v, nv, labels); err != nil {
			return &Result{Err: err}
		}
	} else {
		var err *Error
		if v, pruned, err = addVersion(now, s, nv, labels, t.quota); err != nil {
			return &Result{Err: err}
		}
	}
	s.LastChangedDate = timestamppb.New(now)
	if slices.Contains(v.GetStages(), StageCurrent) {
		noteCurrentMoved(now, s)
	}
	for _, id := range pruned {
		t.deleteValue(s.GetArn(), id)
	}
	t.putValue(s.GetArn(), v.GetVersionId(), nv.GetValue())
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName(), VersionID: v.GetVersionId(), Stages: slices.Clone(v.GetStages())}
}

func (t *txn) updateSecret(now time.Time, op *raftv1.UpdateSecret) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if op.Description != nil {
		s.Description = op.GetDescription()
	}
	if op.KmsKeyId != nil {
		s.KmsKeyId = op.GetKmsKeyId()
	}
	// Versions sealed again under the new key (AWSCURRENT, AWSPENDING,
	// AWSPREVIOUS, as AWS re-encrypts them); one that was removed since the
	// proposer read it is skipped.
	for _, nv := range op.GetReencrypted() {
		if v := findVersion(s, nv.GetVersionId()); v != nil && HasValue(v) && bytes.Equal(v.GetFingerprint(), nv.GetValue().GetFingerprint()) {
			v.KmsKeyId = nv.GetValue().GetKmsKeyId()
			t.putValue(s.GetArn(), v.GetVersionId(), nv.GetValue())
		}
	}
	if op.GetVersion() != nil {
		return t.newVersion(now, s, op.GetVersion(), []string{StageCurrent})
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

func (t *txn) updateVersionStage(now time.Time, op *raftv1.UpdateVersionStage) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	label, moveTo, removeFrom := op.GetVersionStage(), op.GetMoveToVersionId(), op.GetRemoveFromVersionId()
	var target *storagev1.Version
	if moveTo != "" {
		if target = findVersion(s, moveTo); target == nil {
			return &Result{Err: newError(ErrVersionNotFound, "Secrets Manager can't find the specified secret version: %s", moveTo)}
		}
	}
	if removeFrom != "" && findVersion(s, removeFrom) == nil {
		return &Result{Err: newError(ErrVersionNotFound, "Secrets Manager can't find the specified secret version: %s", removeFrom)}
	}
	holder := stageHolder(s, label)
	switch {
	case target != nil && label == StageCurrent && !HasValue(target):
		// A rotation's AWSPENDING version before its function put a value:
		// AWSCURRENT there would leave the secret without a readable value.
		return &Result{Err: newError(ErrInvalidParameter,
			"You can't move staging label AWSCURRENT to version %s because it has no secret value yet.", moveTo)}
	case holder != nil && holder != target && holder.GetVersionId() != removeFrom:
		if removeFrom == "" {
			return &Result{Err: newError(ErrInvalidParameter,
				"The parameter RemoveFromVersionId can't be empty. Staging label %s is currently attached to version %s, so you must explicitly reference that version in RemoveFromVersionId.",
				label, holder.GetVersionId())}
		}
		return &Result{Err: newError(ErrInvalidParameter,
			"The parameter RemoveFromVersionId doesn't match. Staging label %s is currently attached to version %s, not %s.",
			label, holder.GetVersionId(), removeFrom)}
	case holder == nil && removeFrom != "":
		return &Result{Err: newError(ErrInvalidParameter,
			"Staging label %s is not attached to version %s.", label, removeFrom)}
	case target == nil && label == StageCurrent:
		return &Result{Err: newError(ErrInvalidParameter,
			"You can only move staging label AWSCURRENT to a different secret version. It can't be completely removed.")}
	}
	if target == nil {
		detachStage(s, label)
	} else {
		if label == StageCurrent && holder != target {
			noteCurrentMoved(now, s)
		}
		attachStage(s, label, target)
		// Moving AWSCURRENT also lands AWSPREVIOUS on the old version, so
		// check every version, not just the target.
		for _, v := range s.GetVersions() {
			if len(v.GetStages()) > MaxStagesPerVersion {
				return &Result{Err: newError(ErrLimitExceeded, "A version can have at most %d staging labels.", MaxStagesPerVersion)}
			}
		}
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

func (t *txn) deleteSecret(now time.Time, op *raftv1.DeleteSecret) *Result {
	s, err := t.secretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if s.GetReplica() {
		return &Result{Err: errReplicaReadOnly(s.GetPrimaryRegion())}
	}
	if op.GetForce() {
		t.removeSecret(s)
		return &Result{ARN: s.GetArn(), Name: s.GetName(), DeletionDate: now}
	}
	if s.GetDeletedDate() != nil {
		return &Result{Err: newError(ErrMarkedForDeletion,
			"You can't perform this operation on the secret because it was already scheduled for deletion.")}
	}
	deletion := now.Add(time.Duration(op.GetRecoveryWindowDays()) * 24 * time.Hour)
	s.DeletedDate = timestamppb.New(now)
	s.DeletionDate = timestamppb.New(deletion)
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName(), DeletionDate: deletion}
}

func (t *txn) restoreSecret(now time.Time, op *raftv1.RestoreSecret) *Result {
	s, err := t.secretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if s.GetReplica() {
		return &Result{Err: errReplicaReadOnly(s.GetPrimaryRegion())}
	}
	if s.GetDeletedDate() != nil {
		s.DeletedDate, s.DeletionDate = nil, nil
		s.LastChangedDate = timestamppb.New(now)
		t.putSecret(s)
	}
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

// purgeSecret finishes a deletion whose recovery window has ended. A purge
// that races a RestoreSecret finds the secret live and does nothing. A
// replica is never purged on this region's clock: it goes when its primary's
// purge ships, so a restore in the primary region is never lost here.
func (t *txn) purgeSecret(now time.Time, op *raftv1.PurgeSecret) *Result {
	s, err := t.secretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if s.GetReplica() {
		return &Result{Err: errReplicaReadOnly(s.GetPrimaryRegion())}
	}
	if s.GetDeletionDate() == nil || s.GetDeletionDate().AsTime().After(now) {
		return &Result{ARN: s.GetArn(), Name: s.GetName()}
	}
	t.removeSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName(), DeletionDate: s.GetDeletionDate().AsTime()}
}

func (t *txn) tagResource(now time.Time, op *raftv1.TagResource) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if err := mergeTags(s, op.GetTags()); err != nil {
		return &Result{Err: err}
	}
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

// mergeTags adds tags to s, overwriting the values of keys it already has.
func mergeTags(s *storagev1.Secret, tags []*cofferv1.Tag) *Error {
	for _, tag := range tags {
		i := slices.IndexFunc(s.Tags, func(x *cofferv1.Tag) bool { return x.GetKey() == tag.GetKey() })
		if i >= 0 {
			s.Tags[i] = &cofferv1.Tag{Key: tag.GetKey(), Value: tag.GetValue()}
			continue
		}
		s.Tags = append(s.Tags, &cofferv1.Tag{Key: tag.GetKey(), Value: tag.GetValue()})
	}
	if len(s.Tags) > MaxTagsPerSecret {
		return newError(ErrLimitExceeded, "A secret can have at most %d tags.", MaxTagsPerSecret)
	}
	if len(tags) > 0 {
		s.Tagged = true
	}
	return nil
}

func (t *txn) untagResource(now time.Time, op *raftv1.UntagResource) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	s.Tags = slices.DeleteFunc(s.Tags, func(x *cofferv1.Tag) bool { return slices.Contains(op.GetTagKeys(), x.GetKey()) })
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

func (t *txn) putResourcePolicy(now time.Time, op *raftv1.PutResourcePolicy) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	p := op.GetResourcePolicy()
	s.ResourcePolicy = &p
	s.LastChangedDate = timestamppb.New(now)
	t.putSecret(s)
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

func (t *txn) deleteResourcePolicy(now time.Time, op *raftv1.DeleteResourcePolicy) *Result {
	s, err := t.liveSecretByARN(op.GetArn())
	if err != nil {
		return &Result{Err: err}
	}
	if s.ResourcePolicy != nil {
		s.ResourcePolicy = nil
		s.LastChangedDate = timestamppb.New(now)
		t.putSecret(s)
	}
	return &Result{ARN: s.GetArn(), Name: s.GetName()}
}

// recordAccess stores the days on which nodes served reads, gathered in
// memory and proposed in batches, so reads never cost a Raft write. It never
// moves a date backwards and does not count as a change to the secret.
func (t *txn) recordAccess(op *raftv1.RecordAccess) *Result {
	for _, e := range op.GetEntries() {
		s, err := t.secretByARN(e.GetArn())
		if err != nil || e.GetDay() == nil {
			continue // purged or recreated since the read: nothing to record
		}
		day := utcDay(e.GetDay().AsTime())
		changed := false
		if s.GetLastAccessedDate() == nil || s.GetLastAccessedDate().AsTime().Before(day) {
			s.LastAccessedDate = timestamppb.New(day)
			changed = true
		}
		for _, id := range e.GetVersionIds() {
			v := findVersion(s, id)
			if v != nil && (v.GetLastAccessedDate() == nil || v.GetLastAccessedDate().AsTime().Before(day)) {
				v.LastAccessedDate = timestamppb.New(day)
				changed = true
			}
		}
		if changed {
			t.putSecret(s)
		}
	}
	return &Result{}
}
