package server

import (
	"context"
	"slices"
	"strings"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage/kms"
)

// validAlias checks an alias name a user may create or change.
func validAlias(alias string) error {
	if e := checkLength("aliasName", alias, 1, maxAliasLength); e != nil {
		return e
	}
	switch {
	case !aliasPattern.MatchString(alias):
		return apiErr(TypeValidation, "1 validation error detected: Value at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$")
	case strings.HasPrefix(alias, "alias/aws/"):
		return apiErr(TypeKMSInvalidAliasName, "Alias %s must not begin with alias/aws/: those aliases are reserved.", alias)
	case strings.HasPrefix(alias, "alias/coffer/"):
		return apiErr(TypeKMSInvalidAliasName, "Alias %s must not begin with alias/coffer/: those aliases are reserved.", alias)
	}
	return nil
}

// aliasTarget resolves the key an alias is to name: a key id or key ARN,
// never another alias, and a customer key not pending deletion.
func (k *Keys) aliasTarget(ref string) (*storagev1.KmsKey, error) {
	if strings.Contains(ref, "alias/") {
		return nil, apiErr(TypeValidation, "TargetKeyId must be a key id or key ARN, not an alias.")
	}
	key, err := k.key(ref)
	if err != nil {
		return nil, err
	}
	if err := k.customer(key, "an alias"); err != nil {
		return nil, err
	}
	return key, k.notPending(key)
}

func (k *Keys) setAlias(ctx context.Context, op *raftv1.SetKmsAlias) error {
	_, err := k.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_SetKmsAlias{SetKmsAlias: op}})
	return err
}

// CreateAlias implements the KMS operation.
func (k *Keys) CreateAlias(ctx context.Context, req *cofferv1.CreateAliasRequest) (*cofferv1.CreateAliasResponse, error) {
	if err := validAlias(req.GetAliasName()); err != nil {
		return nil, err
	}
	key, err := k.aliasTarget(req.GetTargetKeyId())
	if err != nil {
		return nil, err
	}
	if err := k.setAlias(ctx, &raftv1.SetKmsAlias{Alias: req.GetAliasName(), KeyId: key.GetKeyId(), Create: true}); err != nil {
		return nil, err
	}
	return &cofferv1.CreateAliasResponse{}, nil
}

// UpdateAlias implements the KMS operation.
func (k *Keys) UpdateAlias(ctx context.Context, req *cofferv1.UpdateAliasRequest) (*cofferv1.UpdateAliasResponse, error) {
	if err := validAlias(req.GetAliasName()); err != nil {
		return nil, err
	}
	key, err := k.aliasTarget(req.GetTargetKeyId())
	if err != nil {
		return nil, err
	}
	if err := k.setAlias(ctx, &raftv1.SetKmsAlias{Alias: req.GetAliasName(), KeyId: key.GetKeyId()}); err != nil {
		return nil, err
	}
	return &cofferv1.UpdateAliasResponse{}, nil
}

// DeleteAlias implements the KMS operation.
func (k *Keys) DeleteAlias(ctx context.Context, req *cofferv1.DeleteAliasRequest) (*cofferv1.DeleteAliasResponse, error) {
	if err := validAlias(req.GetAliasName()); err != nil {
		return nil, err
	}
	if err := k.setAlias(ctx, &raftv1.SetKmsAlias{Alias: req.GetAliasName()}); err != nil {
		return nil, err
	}
	return &cofferv1.DeleteAliasResponse{}, nil
}

// ListAliases implements the KMS operation. The default key's aliases are
// listed with it, as KMS lists aws/secretsmanager.
func (k *Keys) ListAliases(_ context.Context, req *cofferv1.ListAliasesRequest) (*cofferv1.ListAliasesResponse, error) {
	limit, err := listLimit("limit", req.GetLimit(), defaultListAliases, maxListAliases)
	if err != nil {
		return nil, err
	}
	var only *storagev1.KmsKey
	if req.GetKeyId() != "" {
		if only, err = k.key(req.GetKeyId()); err != nil {
			return nil, err
		}
	}
	rec, err := k.record()
	if err != nil {
		return nil, err
	}
	var all []*cofferv1.AliasListEntry
	for _, key := range rec.GetKeys() {
		if only != nil && key.GetKeyId() != only.GetKeyId() {
			continue
		}
		aliases := slices.Clone(key.GetAliases())
		if !key.GetCustomer() && !slices.Contains(aliases, kms.AWSManagedKeyAlias) {
			aliases = append(aliases, kms.AWSManagedKeyAlias)
		}
		for _, a := range aliases {
			all = append(all, &cofferv1.AliasListEntry{AliasName: a, AliasArn: k.svc.cfg.aliasARN(a), TargetKeyId: key.GetKeyId()})
		}
	}
	slices.SortFunc(all, func(a, b *cofferv1.AliasListEntry) int { return strings.Compare(a.GetAliasName(), b.GetAliasName()) })
	shown, next, err := page(all, (*cofferv1.AliasListEntry).GetAliasName, req.GetMarker(), limit)
	if err != nil {
		return nil, err
	}
	return &cofferv1.ListAliasesResponse{Aliases: append([]*cofferv1.AliasListEntry{}, shown...), NextMarker: next, Truncated: next != ""}, nil
}
