package server

import (
	"context"
	"errors"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
)

// CreateSecret implements the AWS operation.
func (s *Service) CreateSecret(ctx context.Context, req *cofferv1.CreateSecretRequest) (*cofferv1.CreateSecretResponse, error) {
	// The model's constraints, then AWS's token rule, then the
	// operation's own checks (requireClientToken).
	if e := firstErr(nameConstraints(req.GetName()), validateToken("clientRequestToken", req.GetClientRequestToken()),
		validateDescription(req.GetDescription()), validateKmsKeyRef(req.GetKmsKeyId()), validateTags(req.GetTags()),
		valueConstraints(req.SecretString, req.SecretBinary, req.SecretBinary != nil)); e != nil {
		return nil, e
	}
	if e := firstErr(requireClientToken(ctx, TypeInvalidRequest, req.GetClientRequestToken(), req.SecretString != nil || req.SecretBinary != nil),
		nameShape(req.GetName())); e != nil {
		return nil, e
	}
	kind, plain, hasValue, verr := secretValue(req.SecretString, req.SecretBinary, req.SecretBinary != nil)
	if verr != nil {
		return nil, verr
	}
	if e := s.validateReplicaRegions(req.GetAddReplicaRegions()); e != nil {
		return nil, e
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	if _, err := s.resolveKey(kr, req.GetKmsKeyId()); err != nil {
		return nil, err
	}
	// A retried CreateSecret must seal for the ARN the first attempt created.
	var arn string
	if existing, err := s.lookupForWrite(ctx, req.GetName()); err == nil && existing.GetName() == req.GetName() {
		arn = existing.GetArn()
	} else if arn, err = s.newARN(req.GetName()); err != nil {
		return nil, err
	}
	op := &raftv1.CreateSecret{
		Name:               req.GetName(),
		Arn:                arn,
		Description:        req.GetDescription(),
		KmsKeyId:           req.GetKmsKeyId(),
		Tags:               req.GetTags(),
		PrimaryRegion:      s.cfg.Region,
		ClientRequestToken: req.GetClientRequestToken(),
	}
	if hasValue {
		versionID := req.GetClientRequestToken()
		if versionID == "" {
			versionID = uuid.NewString()
		}
		if op.Version, err = s.sealVersion(ctx, kr, req.GetKmsKeyId(), req.GetName(), arn, versionID, kind, plain); err != nil {
			return nil, err
		}
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreateSecret{CreateSecret: op}})
	if err != nil {
		return nil, err
	}
	resp := &cofferv1.CreateSecretResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID}
	if len(req.GetAddReplicaRegions()) > 0 {
		// A second command: the log has no combined op, and a retry of the
		// whole call repeats both harmlessly (replicas already there are kept).
		if err := s.setReplicas(ctx, res.ARN, replicaConfigs(req.GetAddReplicaRegions(), req.GetForceOverwriteReplicaSecret()), nil); err != nil {
			return nil, err
		}
		after, err := s.state.Secret(res.ARN)
		if err != nil {
			return nil, err
		}
		resp.ReplicationStatus = s.replicationStatus(after)
	}
	return resp, nil
}

// PutSecretValue implements the AWS operation.
func (s *Service) PutSecretValue(ctx context.Context, req *cofferv1.PutSecretValueRequest) (*cofferv1.PutSecretValueResponse, error) {
	if e := firstErr(secretIDConstraints(req.GetSecretId()), validateToken("clientRequestToken", req.GetClientRequestToken()),
		validateStages(req.GetVersionStages()), valueConstraints(req.SecretString, req.SecretBinary, req.SecretBinary != nil)); e != nil {
		return nil, e
	}
	if e := firstErr(requireClientToken(ctx, TypeInvalidRequest, req.GetClientRequestToken(), true), secretIDShape(req.GetSecretId())); e != nil {
		return nil, e
	}
	kind, plain, hasValue, verr := secretValue(req.SecretString, req.SecretBinary, req.SecretBinary != nil)
	if verr != nil {
		return nil, verr
	}
	if !hasValue {
		return nil, apiErr(TypeInvalidRequest, "You must provide either SecretString or SecretBinary.")
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	versionID := req.GetClientRequestToken()
	if versionID == "" {
		versionID = uuid.NewString()
	}
	nv, err := s.sealVersion(ctx, kr, sec.GetKmsKeyId(), sec.GetName(), storage.ValueARN(sec), versionID, kind, plain)
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PutSecretValue{PutSecretValue: &raftv1.PutSecretValue{
		Arn: sec.GetArn(), Version: nv, VersionStages: req.GetVersionStages(),
	}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.PutSecretValueResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID, VersionStages: res.Stages}, nil
}

// UpdateSecret implements the AWS operation.
func (s *Service) UpdateSecret(ctx context.Context, req *cofferv1.UpdateSecretRequest) (*cofferv1.UpdateSecretResponse, error) {
	if e := firstErr(secretIDConstraints(req.GetSecretId()), validateToken("clientRequestToken", req.GetClientRequestToken()),
		validateDescription(req.GetDescription()), validateKmsKeyRef(req.GetKmsKeyId()),
		valueConstraints(req.SecretString, req.SecretBinary, req.SecretBinary != nil)); e != nil {
		return nil, e
	}
	if e := firstErr(requireClientToken(ctx, TypeInvalidRequest, req.GetClientRequestToken(), req.SecretString != nil || req.SecretBinary != nil),
		secretIDShape(req.GetSecretId())); e != nil {
		return nil, e
	}
	kind, plain, hasValue, verr := secretValue(req.SecretString, req.SecretBinary, req.SecretBinary != nil)
	if verr != nil {
		return nil, verr
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	keyRef := sec.GetKmsKeyId()
	if req.KmsKeyId != nil {
		if _, err := s.resolveKey(kr, req.GetKmsKeyId()); err != nil {
			return nil, err
		}
		keyRef = req.GetKmsKeyId()
	}
	op := &raftv1.UpdateSecret{Arn: sec.GetArn(), Description: req.Description, KmsKeyId: req.KmsKeyId}
	if req.KmsKeyId != nil {
		if op.Reencrypted, err = s.reencrypt(ctx, kr, sec, req.GetKmsKeyId()); err != nil {
			return nil, err
		}
	}
	if hasValue {
		versionID := req.GetClientRequestToken()
		if versionID == "" {
			versionID = uuid.NewString()
		}
		if op.Version, err = s.sealVersion(ctx, kr, keyRef, sec.GetName(), storage.ValueARN(sec), versionID, kind, plain); err != nil {
			return nil, err
		}
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UpdateSecret{UpdateSecret: op}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.UpdateSecretResponse{Arn: res.ARN, Name: res.Name, VersionId: res.VersionID}, nil
}

// reencrypt seals the secret's AWSCURRENT, AWSPENDING and AWSPREVIOUS
// values again under the key keyRef names, as AWS does when UpdateSecret
// changes the KmsKeyId; other versions stay under their key. Reading each
// needs kms:Decrypt on its key and writing kms:GenerateDataKey on the new
// one, for the caller.
func (s *Service) reencrypt(ctx context.Context, kr *kms.Keyring, sec *storagev1.Secret, keyRef string) ([]*raftv1.NewVersion, error) {
	newKey, err := s.useKey(ctx, kr, keyRef, true)
	if err != nil {
		return nil, err
	}
	var out []*raftv1.NewVersion
	for _, v := range sec.GetVersions() {
		staged := slices.ContainsFunc(v.GetStages(), func(st string) bool {
			return st == storage.StageCurrent || st == storage.StagePending || st == storage.StagePrevious
		})
		if !staged || !storage.HasValue(v) || v.GetKmsKeyId() == newKey {
			continue
		}
		sv, err := s.state.SecretValue(sec.GetArn(), v.GetVersionId(), "")
		if err != nil {
			return nil, err
		}
		if _, err := s.useKey(ctx, kr, sv.Value.GetKmsKeyId(), false); err != nil {
			return nil, err
		}
		arn := storage.ValueARN(sec)
		plain, err := kr.Unseal(sv.Value, arn, v.GetVersionId())
		if err != nil {
			return nil, err
		}
		sealed, err := kr.Seal(newKey, sec.GetName(), arn, v.GetVersionId(), sv.Value.GetKind(), plain)
		clear(plain)
		if err != nil {
			return nil, err
		}
		out = append(out, &raftv1.NewVersion{VersionId: v.GetVersionId(), Value: sealed})
	}
	return out, nil
}

// UpdateSecretVersionStage implements the AWS operation.
func (s *Service) UpdateSecretVersionStage(ctx context.Context, req *cofferv1.UpdateSecretVersionStageRequest) (*cofferv1.UpdateSecretVersionStageResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateStage("versionStage", req.GetVersionStage()),
		validateToken("removeFromVersionId", req.GetRemoveFromVersionId()), validateToken("moveToVersionId", req.GetMoveToVersionId())); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UpdateVersionStage{UpdateVersionStage: &raftv1.UpdateVersionStage{
		Arn: sec.GetArn(), VersionStage: req.GetVersionStage(),
		RemoveFromVersionId: req.GetRemoveFromVersionId(), MoveToVersionId: req.GetMoveToVersionId(),
	}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.UpdateSecretVersionStageResponse{Arn: res.ARN, Name: res.Name}, nil
}

// DeleteSecret implements the AWS operation.
func (s *Service) DeleteSecret(ctx context.Context, req *cofferv1.DeleteSecretRequest) (*cofferv1.DeleteSecretResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	force := req.GetForceDeleteWithoutRecovery()
	if force && req.RecoveryWindowInDays != nil {
		return nil, apiErr(TypeInvalidParameter, "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
	}
	window := int64(30)
	if req.RecoveryWindowInDays != nil {
		window = req.GetRecoveryWindowInDays()
		if window < 7 || window > 30 {
			return nil, apiErr(TypeInvalidParameter, "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
		}
	}
	sec, err := s.lookupForWrite(ctx, req.GetSecretId())
	if errors.Is(err, storage.ErrSecretNotFound) && force {
		// AWS answers a forced delete of a missing secret with success, so
		// cleanup scripts are idempotent, and as if the secret existed:
		// with an ARN and a name.
		return s.deletedAnswer(req.GetSecretId())
	}
	if err != nil {
		return nil, err
	}
	if sec.GetReplica() {
		return nil, replicaReadOnly(sec.GetPrimaryRegion())
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeleteSecret{DeleteSecret: &raftv1.DeleteSecret{
		Arn: sec.GetArn(), RecoveryWindowDays: window, Force: force,
	}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.DeleteSecretResponse{Arn: res.ARN, Name: res.Name, DeletionDate: timestamppb.New(res.DeletionDate)}, nil
}

// deletedAnswer is a forced delete's answer for a secret that does not
// exist: the ARN given, or one built for the name given, and its name.
func (s *Service) deletedAnswer(id string) (*cofferv1.DeleteSecretResponse, error) {
	out := &cofferv1.DeleteSecretResponse{Arn: id, Name: id, DeletionDate: timestamppb.New(s.now())}
	if p, ok := storage.ParseARN(id); ok {
		out.Name = p.Rest
		if name, full := storage.NameFromFullARN(id); full {
			out.Name = name
		} else {
			// A partial ARN: complete it as a full one would read.
			arn, err := s.newARN(p.Rest)
			if err != nil {
				return nil, err
			}
			out.Arn = arn
		}
		return out, nil
	}
	arn, err := s.newARN(id)
	if err != nil {
		return nil, err
	}
	out.Arn = arn
	return out, nil
}

// RestoreSecret implements the AWS operation.
func (s *Service) RestoreSecret(ctx context.Context, req *cofferv1.RestoreSecretRequest) (*cofferv1.RestoreSecretResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	sec, err := s.lookupForWrite(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if sec.GetReplica() {
		return nil, replicaReadOnly(sec.GetPrimaryRegion())
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_RestoreSecret{RestoreSecret: &raftv1.RestoreSecret{Arn: sec.GetArn()}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.RestoreSecretResponse{Arn: res.ARN, Name: res.Name}, nil
}

// TagResource implements the AWS operation.
func (s *Service) TagResource(ctx context.Context, req *cofferv1.TagResourceRequest) (*cofferv1.TagResourceResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateTags(req.GetTags())); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_TagResource{TagResource: &raftv1.TagResource{
		Arn: sec.GetArn(), Tags: req.GetTags(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.TagResourceResponse{}, nil
}

// UntagResource implements the AWS operation.
func (s *Service) UntagResource(ctx context.Context, req *cofferv1.UntagResourceRequest) (*cofferv1.UntagResourceResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateTagKeys(req.GetTagKeys())); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UntagResource{UntagResource: &raftv1.UntagResource{
		Arn: sec.GetArn(), TagKeys: req.GetTagKeys(),
	}}}); err != nil {
		return nil, err
	}
	return &cofferv1.UntagResourceResponse{}, nil
}
