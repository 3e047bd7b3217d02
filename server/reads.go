package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/storage"
)

// GetSecretValue implements the AWS operation.
func (s *Service) GetSecretValue(ctx context.Context, req *cofferv1.GetSecretValueRequest) (*cofferv1.GetSecretValueResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateToken("versionId", req.GetVersionId()),
		optionalStage(req.GetVersionStage())); e != nil {
		return nil, e
	}
	if err := s.readPoint(ctx); err != nil {
		return nil, err
	}
	v, err := s.readValue(ctx, req.GetSecretId(), req.GetVersionId(), req.GetVersionStage())
	if err != nil {
		return nil, err
	}
	return &cofferv1.GetSecretValueResponse{
		Arn: v.Arn, Name: v.Name, VersionId: v.VersionId, SecretString: v.SecretString,
		SecretBinary: v.SecretBinary, VersionStages: v.VersionStages, CreatedDate: v.CreatedDate,
	}, nil
}

func optionalStage(stage string) *APIError {
	if stage == "" {
		return nil
	}
	return validateStage("versionStage", stage)
}

// readValue finds, unseals and records the read of one version.
func (s *Service) readValue(ctx context.Context, id, versionID, stage string) (*cofferv1.SecretValueEntry, error) {
	sv, err := s.state.SecretValue(id, versionID, stage)
	if err != nil {
		return nil, err
	}
	kr, err := s.keys()
	if err != nil {
		return nil, err
	}
	if _, err := s.useKey(ctx, kr, sv.Value.GetKmsKeyId(), false); err != nil {
		return nil, err
	}
	arn, vid := sv.Secret.GetArn(), sv.Version.GetVersionId()
	// A replica's values stay bound to the ARN they were sealed for.
	plain, err := kr.Unseal(sv.Value, storage.ValueARN(sv.Secret), vid)
	if err != nil {
		s.log.Error("unseal failed", "arn", arn, "version_id", vid, "err", err)
		return nil, err
	}
	s.access.record(sv.Secret, sv.Version, s.now())
	out := &cofferv1.SecretValueEntry{
		Arn: arn, Name: sv.Secret.GetName(), VersionId: vid,
		VersionStages: slices.Clone(sv.Version.GetStages()), CreatedDate: sv.Version.GetCreatedDate(),
	}
	if sv.Value.GetKind() == storagev1.ValueKind_VALUE_KIND_BINARY {
		out.SecretBinary = plain
	} else {
		str := string(plain)
		clear(plain)
		out.SecretString = &str
	}
	return out, nil
}

// BatchGetSecretValue implements the AWS operation.
func (s *Service) BatchGetSecretValue(ctx context.Context, req *cofferv1.BatchGetSecretValueRequest) (*cofferv1.BatchGetSecretValueResponse, error) {
	ids, filters := req.GetSecretIdList(), req.GetFilters()
	switch {
	case len(ids) > 0 && len(filters) > 0:
		return nil, apiErr(TypeInvalidParameter, "Either 'SecretIdList' or 'Filters' must be provided, but not both.")
	case len(ids) == 0 && len(filters) == 0:
		return nil, apiErr(TypeInvalidParameter, "You must specify either SecretIdList or Filters.")
	case len(ids) > maxBatchIDs:
		return nil, validationErr("secretIdList", "Member must have length less than or equal to 20")
	case len(ids) > 0 && (req.MaxResults != nil || req.GetNextToken() != ""):
		return nil, apiErr(TypeInvalidParameter, "MaxResults and NextToken can be used only with Filters.")
	}
	if e := firstErr(validateFilters(filters), validateMaxResults("maxResults", req.MaxResults, maxBatchResults)); e != nil {
		return nil, e
	}
	if err := s.readPoint(ctx); err != nil {
		return nil, err
	}
	resp := &cofferv1.BatchGetSecretValueResponse{}
	// A caller sees only the secrets it may read (GetSecretValue of
	// AWSCURRENT, decided as for a GetSecretValue naming the secret): one
	// it named and may not read is an AccessDeniedException entry (as in
	// AWS), one a filter matched is left out. The decision comes before
	// the secret is looked at further, so a caller without rights gets
	// AccessDenied whether the secret exists, is scheduled for deletion or
	// not; only a caller allowed to read it learns ResourceNotFound.
	f := secretFilterFrom(ctx)
	named := len(ids) > 0
	if len(ids) == 0 {
		page, err := s.state.ListSecrets(storage.Query{
			Filters: storageFilters(filters), MaxResults: int(orDefault(req.MaxResults, maxBatchResults)), NextToken: req.GetNextToken(),
		})
		if err != nil {
			return nil, err
		}
		for _, sec := range page.Secrets {
			ids = append(ids, sec.GetArn())
		}
		resp.NextToken = page.NextToken
	}
	for _, id := range ids {
		if e := validateSecretID(id); e != nil {
			resp.Errors = append(resp.Errors, &cofferv1.APIError{SecretId: id, ErrorCode: e.Type, Message: e.Message})
			continue
		}
		var v *cofferv1.SecretValueEntry
		err := s.allowBatchRead(f, id)
		if err == nil {
			v, err = s.readValue(ctx, id, "", "")
		}
		if err != nil {
			ae := AsAPIError(err)
			if !named && ae.Type == TypeAccessDeniedException {
				continue
			}
			resp.Errors = append(resp.Errors, &cofferv1.APIError{SecretId: id, ErrorCode: ae.Type, Message: ae.Message})
			continue
		}
		resp.SecretValues = append(resp.SecretValues, v)
	}
	return resp, nil
}

// allowBatchRead decides whether the caller behind f (nil: an internal
// caller, allowed) may read the secret it knows as id in a batch.
func (s *Service) allowBatchRead(f SecretFilter, id string) error {
	if f == nil {
		return nil
	}
	sec, err := s.state.Secret(id)
	if err != nil && !errors.Is(err, storage.ErrSecretNotFound) {
		return err
	}
	return f.AllowSecret(SecretAction("GetSecretValue"), id, sec)
}

func orDefault(v *int32, d int32) int32 {
	if v == nil {
		return d
	}
	return *v
}

// readSecret is a linearizable (or, on request, stale) read of one
// secret's record: validate the id, take the read point, look it up.
func (s *Service) readSecret(ctx context.Context, id string) (*storagev1.Secret, error) {
	if e := validateSecretID(id); e != nil {
		return nil, e
	}
	if err := s.readPoint(ctx); err != nil {
		return nil, err
	}
	return s.state.Secret(id)
}

// DescribeSecret implements the AWS operation.
func (s *Service) DescribeSecret(ctx context.Context, req *cofferv1.DescribeSecretRequest) (*cofferv1.DescribeSecretResponse, error) {
	sec, err := s.readSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	e := listEntry(sec, s.now())
	e.LastAccessedDate = s.access.seen(e.LastAccessedDate, sec.GetArn(), "")
	return &cofferv1.DescribeSecretResponse{
		ReplicationStatus: s.replicationStatus(sec),
		Arn:               e.Arn, Name: e.Name, Description: e.Description, KmsKeyId: e.KmsKeyId,
		RotationEnabled: e.RotationEnabled, RotationLambdaArn: e.RotationLambdaArn, RotationRules: e.RotationRules,
		LastRotatedDate: e.LastRotatedDate, LastChangedDate: e.LastChangedDate, LastAccessedDate: e.LastAccessedDate,
		DeletedDate: e.DeletedDate, NextRotationDate: e.NextRotationDate, Tags: e.Tags,
		VersionIdsToStages: e.SecretVersionsToStages, OwningService: e.OwningService, CreatedDate: e.CreatedDate,
		PrimaryRegion: e.PrimaryRegion, RotationStatus: rotationStatus(sec),
	}, nil
}

// listEntry renders a secret's metadata; DescribeSecret shares it.
func listEntry(sec *storagev1.Secret, now time.Time) *cofferv1.SecretListEntry {
	stages := map[string]*cofferv1.VersionStages{}
	for _, v := range sec.GetVersions() {
		if len(v.GetStages()) > 0 {
			stages[v.GetVersionId()] = &cofferv1.VersionStages{Stages: slices.Clone(v.GetStages())}
		}
	}
	// nil for a secret never tagged, empty (not nil) for one whose tags
	// were all removed: the AWS protocol keeps "Tags": [] for the latter.
	var tags []*cofferv1.Tag
	if sec.GetTagged() || len(sec.GetTags()) > 0 {
		tags = make([]*cofferv1.Tag, len(sec.GetTags()))
	}
	for i, t := range sec.GetTags() {
		tags[i] = proto.CloneOf(t)
	}
	return &cofferv1.SecretListEntry{
		Arn:                    sec.GetArn(),
		Name:                   sec.GetName(),
		Description:            sec.GetDescription(),
		KmsKeyId:               sec.GetKmsKeyId(),
		LastChangedDate:        sec.GetLastChangedDate(),
		LastAccessedDate:       sec.GetLastAccessedDate(),
		DeletedDate:            sec.GetDeletedDate(),
		Tags:                   tags,
		SecretVersionsToStages: stages,
		OwningService:          sec.GetOwningService(),
		CreatedDate:            sec.GetCreatedDate(),
		PrimaryRegion:          primaryRegion(sec),
		RotationEnabled:        sec.GetRotationEnabled(),
		RotationLambdaArn:      sec.GetRotationLambdaArn(),
		RotationRules:          sec.GetRotationRules(),
		LastRotatedDate:        lastRotated(sec),
		NextRotationDate:       rotation.NextRotationDate(sec, now),
	}
}

// primaryRegion is PrimaryRegion as AWS reports it: only for a secret
// that has replicas, or is one; AWS omits it for a secret of one region.
func primaryRegion(sec *storagev1.Secret) string {
	if sec.GetReplica() || len(sec.GetReplicas()) > 0 {
		return sec.GetPrimaryRegion()
	}
	return ""
}

// lastRotated is LastRotatedDate as AWS reports it: null while rotation is
// off.
func lastRotated(sec *storagev1.Secret) *timestamppb.Timestamp {
	if !sec.GetRotationEnabled() {
		return nil
	}
	return sec.GetLastRotatedDate()
}

// ListSecrets implements the AWS operation.
func (s *Service) ListSecrets(ctx context.Context, req *cofferv1.ListSecretsRequest) (*cofferv1.ListSecretsResponse, error) {
	if e := firstErr(validateFilters(req.GetFilters()), validateMaxResults("maxResults", req.MaxResults, maxListResults)); e != nil {
		return nil, e
	}
	switch req.GetSortBy() {
	case "", storage.SortCreatedDate, storage.SortLastAccessedDate, storage.SortLastChangedDate, storage.SortName:
	default:
		return nil, validationErr("sortBy", "Member must satisfy enum value set: [created-date, last-accessed-date, last-changed-date, name]")
	}
	switch req.GetSortOrder() {
	case "", storage.SortAsc, storage.SortDesc:
	default:
		return nil, validationErr("sortOrder", "Member must satisfy enum value set: [asc, desc]")
	}
	if err := s.readPoint(ctx); err != nil {
		return nil, err
	}
	page, err := s.state.ListSecrets(storage.Query{
		Filters:                storageFilters(req.GetFilters()),
		IncludePlannedDeletion: req.GetIncludePlannedDeletion(),
		SortBy:                 req.GetSortBy(),
		SortOrder:              req.GetSortOrder(),
		MaxResults:             int(orDefault(req.MaxResults, maxListResults)),
		NextToken:              req.GetNextToken(),
	})
	if err != nil {
		return nil, err
	}
	resp := &cofferv1.ListSecretsResponse{NextToken: page.NextToken}
	// A caller sees only the secrets it may list (secretsmanager:ListSecrets
	// on the secret's ARN), so a page may hold fewer than MaxResults.
	f := secretFilterFrom(ctx)
	for _, sec := range page.Secrets {
		if f != nil {
			if err := f.AllowSecret(SecretAction("ListSecrets"), sec.GetArn(), sec); err != nil {
				if AsAPIError(err).Type == TypeAccessDeniedException {
					continue
				}
				return nil, err
			}
		}
		e := listEntry(sec, s.now())
		e.LastAccessedDate = s.access.seen(e.LastAccessedDate, sec.GetArn(), "")
		resp.SecretList = append(resp.SecretList, e)
	}
	return resp, nil
}

// ListSecretVersionIds implements the AWS operation.
func (s *Service) ListSecretVersionIds(ctx context.Context, req *cofferv1.ListSecretVersionIdsRequest) (*cofferv1.ListSecretVersionIdsResponse, error) {
	if e := firstErr(validateSecretID(req.GetSecretId()), validateMaxResults("maxResults", req.MaxResults, maxListResults)); e != nil {
		return nil, e
	}
	if err := s.readPoint(ctx); err != nil {
		return nil, err
	}
	page, err := s.state.SecretVersions(req.GetSecretId(), req.GetIncludeDeprecated(), int(orDefault(req.MaxResults, maxListResults)), req.GetNextToken())
	if err != nil {
		return nil, err
	}
	resp := &cofferv1.ListSecretVersionIdsResponse{Arn: page.Secret.GetArn(), Name: page.Secret.GetName(), NextToken: page.NextToken}
	defaultKey := ""
	if kr, err := s.keys(); err == nil {
		defaultKey = kr.DefaultKeyID()
	}
	for _, v := range page.Versions {
		keyID := v.GetKmsKeyId()
		if keyID == defaultKey && page.Secret.GetKmsKeyId() == "" {
			keyID = "DefaultEncryptionKey" // what AWS reports for the default key
		}
		e := &cofferv1.SecretVersionsListEntry{
			VersionId:        v.GetVersionId(),
			VersionStages:    slices.Clone(v.GetStages()),
			LastAccessedDate: s.access.seen(v.GetLastAccessedDate(), page.Secret.GetArn(), v.GetVersionId()),
			CreatedDate:      v.GetCreatedDate(),
		}
		if storage.HasValue(v) { // a rotation's AWSPENDING stub has no key yet
			e.KmsKeyIds = []string{keyID}
		}
		resp.Versions = append(resp.Versions, e)
	}
	return resp, nil
}

// GetResourcePolicy implements the AWS operation.
func (s *Service) GetResourcePolicy(ctx context.Context, req *cofferv1.GetResourcePolicyRequest) (*cofferv1.GetResourcePolicyResponse, error) {
	sec, err := s.readSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	return &cofferv1.GetResourcePolicyResponse{Arn: sec.GetArn(), Name: sec.GetName(), ResourcePolicy: sec.ResourcePolicy}, nil
}
