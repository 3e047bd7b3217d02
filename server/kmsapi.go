package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/policy"
	"github.com/cofferhq/coffer/storage/kms"
)

// Keys implements the KeyService: the region's KMS keys as resources. Key
// metadata is read from the stored keyring record; material is made here,
// sealed under the root key, and only then proposed.
type Keys struct {
	cofferv1.UnimplementedKeyServiceServer
	svc *Service
}

var _ cofferv1.KeyServiceServer = (*Keys)(nil)

// NewKeys builds the KeyService over svc's replicator, state and root key.
func NewKeys(svc *Service) *Keys { return &Keys{svc: svc} }

// KMS's bounds on what a request carries.
const (
	maxKeyDescription    = 8192
	maxKeyTags           = 50
	defaultDeletionDays  = 30
	minDeletionDays      = 7
	maxDeletionDays      = 30
	defaultRotationDays  = 365
	minRotationDays      = 90
	maxRotationDays      = 2560
	defaultListKeys      = 100
	maxListKeys          = 1000
	defaultListAliases   = 50
	maxListAliases       = 100
	defaultKeyPolicyName = "default"
)

// record reads the stored keyring record.
func (k *Keys) record() (*storagev1.Keyring, error) {
	rec, err := k.svc.state.Keyring()
	if err != nil {
		return nil, fmt.Errorf("load keyring: %w", err)
	}
	if rec == nil {
		return nil, errKeyringNotReady
	}
	return rec, nil
}

// key resolves a KeyId the request carries, or answers KMS's
// ValidationException, InvalidArnException or NotFoundException.
func (k *Keys) key(ref string) (*storagev1.KmsKey, error) {
	if e := checkLength("keyId", ref, 1, maxKeyIDLength); e != nil {
		return nil, e
	}
	if strings.HasPrefix(ref, "arn:") {
		if _, ok := k.svc.cfg.parseKeyRef(ref); !ok {
			return nil, apiErr(TypeKMSInvalidArn, "Invalid arn %s", ref)
		}
	}
	rec, err := k.record()
	if err != nil {
		return nil, err
	}
	key := k.svc.cfg.findKey(rec, ref)
	if key == nil {
		if strings.Contains(ref, "alias/") {
			return nil, apiErr(TypeKMSNotFound, "Alias %s is not found.", k.aliasARNOf(ref))
		}
		return nil, apiErr(TypeKMSNotFound, "Key '%s' does not exist", k.keyARNOf(ref))
	}
	return key, nil
}

func (k *Keys) keyARNOf(ref string) string {
	if strings.HasPrefix(ref, "arn:") {
		return ref
	}
	return k.svc.cfg.keyARN(ref)
}

func (k *Keys) aliasARNOf(ref string) string {
	if strings.HasPrefix(ref, "arn:") {
		return ref
	}
	return k.svc.cfg.aliasARN(ref)
}

// metadata is a key's KeyMetadata.
func (k *Keys) metadata(key *storagev1.KmsKey) *cofferv1.KeyMetadata {
	manager := "CUSTOMER"
	if !key.GetCustomer() {
		manager = "AWS"
	}
	state := keyState(key)
	return &cofferv1.KeyMetadata{
		AwsAccountId: k.svc.cfg.AccountID, KeyId: key.GetKeyId(), Arn: k.svc.cfg.keyARN(key.GetKeyId()),
		CreationDate: key.GetCreatedDate(), Enabled: state == keyStateEnabled, Description: key.GetDescription(),
		KeyUsage: "ENCRYPT_DECRYPT", KeyState: state, DeletionDate: key.GetDeletionDate(), Origin: "AWS_KMS",
		KeyManager: manager, KeySpec: "SYMMETRIC_DEFAULT", CustomerMasterKeySpec: "SYMMETRIC_DEFAULT",
		EncryptionAlgorithms: []string{"SYMMETRIC_DEFAULT"},
	}
}

// customer refuses an operation on the region's default key, which the
// region manages, as KMS refuses it on an AWS managed key.
func (k *Keys) customer(key *storagev1.KmsKey, op string) error {
	if key.GetCustomer() {
		return nil
	}
	return apiErr(TypeKMSUnsupported, "%s is an AWS managed key; %s is not supported on it.", k.svc.cfg.keyARN(key.GetKeyId()), op)
}

// notPending refuses an operation on a key pending deletion.
func (k *Keys) notPending(key *storagev1.KmsKey) error {
	if key.GetDeletionDate() != nil {
		return apiErr(TypeKMSInvalidState, "%s is pending deletion.", k.svc.cfg.keyARN(key.GetKeyId()))
	}
	return nil
}

func (k *Keys) update(ctx context.Context, op *raftv1.UpdateKmsKey) error {
	_, err := k.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UpdateKmsKey{UpdateKmsKey: op}})
	return err
}

// CreateKey implements the KMS operation.
func (k *Keys) CreateKey(ctx context.Context, req *cofferv1.CreateKeyRequest) (*cofferv1.CreateKeyResponse, error) {
	if e := checkLength("description", req.GetDescription(), 0, maxKeyDescription); e != nil {
		return nil, e
	}
	switch {
	case req.GetKeyUsage() != "" && req.GetKeyUsage() != "ENCRYPT_DECRYPT":
		return nil, apiErr(TypeKMSUnsupported, "KeyUsage %s is not supported: Coffer keys are symmetric ENCRYPT_DECRYPT keys.", truncated(req.GetKeyUsage()))
	case req.GetKeySpec() != "" && req.GetKeySpec() != "SYMMETRIC_DEFAULT",
		req.GetCustomerMasterKeySpec() != "" && req.GetCustomerMasterKeySpec() != "SYMMETRIC_DEFAULT":
		return nil, apiErr(TypeKMSUnsupported, "Only SYMMETRIC_DEFAULT keys are supported.")
	case req.GetOrigin() != "" && req.GetOrigin() != "AWS_KMS":
		return nil, apiErr(TypeKMSUnsupported, "Origin %s is not supported: key material is always made by the service (AWS_KMS).", truncated(req.GetOrigin()))
	case req.GetMultiRegion():
		return nil, apiErr(TypeKMSUnsupported, "Multi-Region keys are not supported: each region has its own keys.")
	case len(req.GetTags()) > maxKeyTags:
		return nil, apiErr(TypeLimitExceeded, "A key can have at most %d tags.", maxKeyTags)
	}
	tags := map[string]string{}
	for _, t := range req.GetTags() {
		if e := firstErr(checkLength("tagKey", t.GetTagKey(), 1, 128), checkLength("tagValue", t.GetTagValue(), 0, 256)); e != nil {
			return nil, e
		}
		tags[t.GetTagKey()] = t.GetTagValue()
	}
	doc := req.GetPolicy()
	if doc == "" {
		doc = k.svc.cfg.defaultKeyPolicy()
	} else if err := validKeyPolicy(doc); err != nil {
		return nil, err
	}
	id := kms.NewKeyID()
	var version *storagev1.KmsKeyVersion
	if err := k.svc.root.Use(func(root []byte) (err error) {
		version, err = kms.NewKeyVersion(root, id, 1)
		return err
	}); err != nil {
		return nil, fmt.Errorf("new key material: %w", err)
	}
	key := &storagev1.KmsKey{KeyId: id, Description: req.GetDescription(), Versions: []*storagev1.KmsKeyVersion{version},
		PrimaryVersion: 1, Policy: doc, Tags: tags}
	if _, err := k.svc.propose(ctx, &raftv1.Command{Op: &raftv1.Command_CreateKmsKey{CreateKmsKey: &raftv1.CreateKmsKey{Key: key}}}); err != nil {
		return nil, err
	}
	created, err := k.key(id)
	if err != nil {
		return nil, err
	}
	return &cofferv1.CreateKeyResponse{KeyMetadata: k.metadata(created)}, nil
}

// validKeyPolicy parses a key policy as a resource policy: every statement
// names its principals.
func validKeyPolicy(doc string) error {
	if e := checkLength("policy", doc, 1, policy.MaxDocumentLength); e != nil {
		return e
	}
	if _, err := policy.ParseResource(doc); err != nil {
		m := malformed(err)
		m.Message = strings.Replace(m.Message, "This resource policy", "The key policy", 1)
		return m
	}
	return nil
}

func truncated(s string) string {
	if utf8.RuneCountInString(s) <= 64 {
		return s
	}
	return string([]rune(s)[:64]) + "…"
}

// DescribeKey implements the KMS operation.
func (k *Keys) DescribeKey(_ context.Context, req *cofferv1.DescribeKeyRequest) (*cofferv1.DescribeKeyResponse, error) {
	key, err := k.key(req.GetKeyId())
	if err != nil {
		return nil, err
	}
	return &cofferv1.DescribeKeyResponse{KeyMetadata: k.metadata(key)}, nil
}

// sortedKeys is the keyring's keys by creation date, then id: the order
// ListKeys pages through.
func sortedKeys(rec *storagev1.Keyring) []*storagev1.KmsKey {
	keys := slices.Clone(rec.GetKeys())
	slices.SortFunc(keys, func(a, b *storagev1.KmsKey) int {
		if c := a.GetCreatedDate().AsTime().Compare(b.GetCreatedDate().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.GetKeyId(), b.GetKeyId())
	})
	return keys
}

// page cuts items after marker (the name of the last item of the previous
// page) to limit, KMS's way: NextMarker is the last name shown.
func page[T any](items []T, name func(T) string, marker string, limit int) ([]T, string, error) {
	start := 0
	if marker != "" {
		i := slices.IndexFunc(items, func(x T) bool { return name(x) == marker })
		if i < 0 {
			return nil, "", apiErr(TypeKMSInvalidMarker, "The marker %s does not continue this listing.", truncated(marker))
		}
		start = i + 1
	}
	items = items[start:]
	if len(items) <= limit {
		return items, "", nil
	}
	return items[:limit], name(items[limit-1]), nil
}

func listLimit(field string, limit int32, def, hi int) (int, error) {
	switch {
	case limit == 0:
		return def, nil
	case limit < 1 || int(limit) > hi:
		return 0, validationErr(field, fmt.Sprintf("Member must have value between 1 and %d", hi))
	}
	return int(limit), nil
}

// ListKeys implements the KMS operation.
func (k *Keys) ListKeys(_ context.Context, req *cofferv1.ListKeysRequest) (*cofferv1.ListKeysResponse, error) {
	limit, err := listLimit("limit", req.GetLimit(), defaultListKeys, maxListKeys)
	if err != nil {
		return nil, err
	}
	rec, err := k.record()
	if err != nil {
		return nil, err
	}
	keys, next, err := page(sortedKeys(rec), (*storagev1.KmsKey).GetKeyId, req.GetMarker(), limit)
	if err != nil {
		return nil, err
	}
	resp := &cofferv1.ListKeysResponse{Keys: []*cofferv1.KeyListEntry{}, NextMarker: next, Truncated: next != ""}
	for _, key := range keys {
		resp.Keys = append(resp.Keys, &cofferv1.KeyListEntry{KeyId: key.GetKeyId(), KeyArn: k.svc.cfg.keyARN(key.GetKeyId())})
	}
	return resp, nil
}

// EnableKey implements the KMS operation.
func (k *Keys) EnableKey(ctx context.Context, req *cofferv1.EnableKeyRequest) (*cofferv1.EnableKeyResponse, error) {
	if err := k.setDisabled(ctx, req.GetKeyId(), false, "EnableKey"); err != nil {
		return nil, err
	}
	return &cofferv1.EnableKeyResponse{}, nil
}

// DisableKey implements the KMS operation. Until the key is enabled again,
// every secret version under it fails to read (DecryptionFailure) and no
// version can be written under it (EncryptionFailure).
func (k *Keys) DisableKey(ctx context.Context, req *cofferv1.DisableKeyRequest) (*cofferv1.DisableKeyResponse, error) {
	if err := k.setDisabled(ctx, req.GetKeyId(), true, "DisableKey"); err != nil {
		return nil, err
	}
	return &cofferv1.DisableKeyResponse{}, nil
}

func (k *Keys) setDisabled(ctx context.Context, ref string, disabled bool, op string) error {
	key, err := k.key(ref)
	if err != nil {
		return err
	}
	if err := k.customer(key, op); err != nil {
		return err
	}
	if err := k.notPending(key); err != nil {
		return err
	}
	return k.update(ctx, &raftv1.UpdateKmsKey{KeyId: key.GetKeyId(), Disabled: &disabled})
}

// ScheduleKeyDeletion implements the KMS operation.
func (k *Keys) ScheduleKeyDeletion(ctx context.Context, req *cofferv1.ScheduleKeyDeletionRequest) (*cofferv1.ScheduleKeyDeletionResponse, error) {
	days := req.GetPendingWindowInDays()
	if days == 0 {
		days = defaultDeletionDays
	}
	if days < minDeletionDays || days > maxDeletionDays {
		return nil, validationErr("pendingWindowInDays", fmt.Sprintf("Member must have value between %d and %d", minDeletionDays, maxDeletionDays))
	}
	key, err := k.key(req.GetKeyId())
	if err != nil {
		return nil, err
	}
	if err := k.customer(key, "ScheduleKeyDeletion"); err != nil {
		return nil, err
	}
	if err := k.notPending(key); err != nil {
		return nil, err
	}
	date := timestamppb.New(k.svc.now().Add(time.Duration(days) * 24 * time.Hour))
	if err := k.update(ctx, &raftv1.UpdateKmsKey{KeyId: key.GetKeyId(), DeletionDate: date}); err != nil {
		return nil, err
	}
	return &cofferv1.ScheduleKeyDeletionResponse{KeyId: k.svc.cfg.keyARN(key.GetKeyId()), DeletionDate: date,
		KeyState: keyStatePendingDeletion, PendingWindowInDays: days}, nil
}

// CancelKeyDeletion implements the KMS operation; the key is left disabled.
func (k *Keys) CancelKeyDeletion(ctx context.Context, req *cofferv1.CancelKeyDeletionRequest) (*cofferv1.CancelKeyDeletionResponse, error) {
	key, err := k.key(req.GetKeyId())
	if err != nil {
		return nil, err
	}
	if key.GetDeletionDate() == nil {
		return nil, apiErr(TypeKMSInvalidState, "%s is not pending deletion.", k.svc.cfg.keyARN(key.GetKeyId()))
	}
	if err := k.update(ctx, &raftv1.UpdateKmsKey{KeyId: key.GetKeyId(), CancelDeletion: true}); err != nil {
		return nil, err
	}
	return &cofferv1.CancelKeyDeletionResponse{KeyId: k.svc.cfg.keyARN(key.GetKeyId())}, nil
}

// rotatable checks a key may have its rotation changed: a customer key,
// enabled, not pending deletion.
func (k *Keys) rotatable(ref, op string) (*storagev1.KmsKey, error) {
	key, err := k.key(ref)
	if err != nil {
		return nil, err
	}
	if err := k.customer(key, op); err != nil {
		return nil, err
	}
	if err := k.notPending(key); err != nil {
		return nil, err
	}
	if key.GetDisabled() {
		return nil, apiErr(TypeKMSDisabled, "%s is disabled.", k.svc.cfg.keyARN(key.GetKeyId()))
	}
	return key, nil
}

// EnableKeyRotation implements the KMS operation.
func (k *Keys) EnableKeyRotation(ctx context.Context, req *cofferv1.EnableKeyRotationRequest) (*cofferv1.EnableKeyRotationResponse, error) {
	days := req.GetRotationPeriodInDays()
	if days == 0 {
		days = defaultRotationDays
	}
	if days < minRotationDays || days > maxRotationDays {
		return nil, validationErr("rotationPeriodInDays", fmt.Sprintf("Member must have value between %d and %d", minRotationDays, maxRotationDays))
	}
	key, err := k.rotatable(req.GetKeyId(), "EnableKeyRotation")
	if err != nil {
		return nil, err
	}
	on, period := true, uint32(days)
	next := timestamppb.New(k.svc.now().Add(time.Duration(days) * 24 * time.Hour))
	if err := k.update(ctx, &raftv1.UpdateKmsKey{KeyId: key.GetKeyId(), RotationEnabled: &on, RotationPeriodDays: &period,
		NextRotationDate: next, RequireEnabled: true}); err != nil {
		return nil, err
	}
	return &cofferv1.EnableKeyRotationResponse{}, nil
}

// DisableKeyRotation implements the KMS operation.
func (k *Keys) DisableKeyRotation(ctx context.Context, req *cofferv1.DisableKeyRotationRequest) (*cofferv1.DisableKeyRotationResponse, error) {
	key, err := k.rotatable(req.GetKeyId(), "DisableKeyRotation")
	if err != nil {
		return nil, err
	}
	off := false
	if err := k.update(ctx, &raftv1.UpdateKmsKey{KeyId: key.GetKeyId(), RotationEnabled: &off, RequireEnabled: true}); err != nil {
		return nil, err
	}
	return &cofferv1.DisableKeyRotationResponse{}, nil
}

// GetKeyRotationStatus implements the KMS operation.
func (k *Keys) GetKeyRotationStatus(_ context.Context, req *cofferv1.GetKeyRotationStatusRequest) (*cofferv1.GetKeyRotationStatusResponse, error) {
	key, err := k.key(req.GetKeyId())
	if err != nil {
		return nil, err
	}
	if err := k.notPending(key); err != nil {
		return nil, err
	}
	resp := &cofferv1.GetKeyRotationStatusResponse{KeyId: k.svc.cfg.keyARN(key.GetKeyId()), KeyRotationEnabled: key.GetRotationEnabled(),
		OnDemandRotationStartDate: key.GetLastOnDemandRotation()}
	if key.GetRotationEnabled() {
		resp.RotationPeriodInDays = int32(key.GetRotationPeriodDays())
		resp.NextRotationDate = key.GetNextRotationDate()
	}
	return resp, nil
}

// RotateKeyOnDemand implements the KMS operation: new material becomes the
// key's primary version; what the old material protects keeps decrypting
// with it, and nothing is re-encrypted.
func (k *Keys) RotateKeyOnDemand(ctx context.Context, req *cofferv1.RotateKeyOnDemandRequest) (*cofferv1.RotateKeyOnDemandResponse, error) {
	key, err := k.rotatable(req.GetKeyId(), "RotateKeyOnDemand")
	if err != nil {
		return nil, err
	}
	if err := k.svc.rotateKey(ctx, key, true); err != nil {
		return nil, err
	}
	return &cofferv1.RotateKeyOnDemandResponse{KeyId: k.svc.cfg.keyARN(key.GetKeyId())}, nil
}

// rotateKey proposes key's next material version as its primary one.
func (s *Service) rotateKey(ctx context.Context, key *storagev1.KmsKey, onDemand bool) error {
	highest := uint32(0)
	for _, v := range key.GetVersions() {
		highest = max(highest, v.GetVersion())
	}
	var version *storagev1.KmsKeyVersion
	if err := s.root.Use(func(root []byte) (err error) {
		version, err = kms.NewKeyVersion(root, key.GetKeyId(), highest+1)
		return err
	}); err != nil {
		return fmt.Errorf("new key material: %w", err)
	}
	op := &raftv1.UpdateKmsKey{KeyId: key.GetKeyId(), NewVersion: version, OnDemand: onDemand, RequireEnabled: true}
	if !onDemand && key.GetRotationEnabled() {
		op.NextRotationDate = timestamppb.New(s.now().Add(time.Duration(key.GetRotationPeriodDays()) * 24 * time.Hour))
	}
	_, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_UpdateKmsKey{UpdateKmsKey: op}})
	return err
}
