package storage

import (
	"encoding/binary"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	bolt "go.etcd.io/bbolt"
)

// KMS keys live in the keyring record (meta/keyring), one record for the
// region: each change rewrites it and bumps its revision, so a node knows
// to unseal it again. Key material arrives sealed under the root key; Apply
// never sees it in the clear.

// ReservedAliasPrefix starts the aliases only the service may create.
const ReservedAliasPrefix = "alias/aws/"

func (t *txn) keyring() (*storagev1.Keyring, *Error) {
	raw := t.tx.Bucket(bucketMeta).Get(keyKeyring)
	if raw == nil {
		return nil, newError(ErrKMSInvalidState, "The region's keyring is not initialised yet.")
	}
	k := &storagev1.Keyring{}
	if err := unmarshal(raw, k); err != nil {
		panic("storage: stored keyring does not decode: " + err.Error())
	}
	return k, nil
}

func (t *txn) putKeyring(k *storagev1.Keyring) {
	k.Revision++
	t.put(t.tx.Bucket(bucketMeta), keyKeyring, k)
}

func findKMSKey(k *storagev1.Keyring, id string) *storagev1.KmsKey {
	for _, key := range k.GetKeys() {
		if key.GetKeyId() == id {
			return key
		}
	}
	return nil
}

func errKMSKeyNotFound(id string) *Error {
	return newError(ErrKMSKeyNotFound, "Key '%s' does not exist", id)
}

func (t *txn) createKMSKey(now time.Time, op *raftv1.CreateKmsKey) *Result {
	k, err := t.keyring()
	if err != nil {
		return &Result{Err: err}
	}
	key := op.GetKey()
	if key.GetKeyId() == "" || len(key.GetVersions()) != 1 || key.GetVersions()[0].GetVersion() != 1 || key.GetPrimaryVersion() != 1 {
		panic("storage: CreateKmsKey without an id or with other than one version 1")
	}
	if findKMSKey(k, key.GetKeyId()) != nil {
		return &Result{Err: newError(ErrKMSAliasExists, "Key '%s' already exists", key.GetKeyId())}
	}
	key = proto.CloneOf(key)
	key.Aliases = nil // aliases come with SetKmsAlias
	key.Customer = true
	key.CreatedDate = timestamppb.New(now)
	key.Versions[0].CreatedDate = timestamppb.New(now)
	k.Keys = append(k.Keys, key)
	t.putKeyring(k)
	return &Result{}
}

// kmsKeyChange applies op to key, or says why not. It changes key only
// when it returns nil.
func kmsKeyChange(now time.Time, key *storagev1.KmsKey, op *raftv1.UpdateKmsKey) *Error {
	pending := key.GetDeletionDate() != nil
	// The default key gets new material only from the region itself
	// (before its nonce limit); users change nothing of it.
	changesState := op.Disabled != nil || op.GetDeletionDate() != nil ||
		op.RotationEnabled != nil || op.Policy != nil
	if !key.GetCustomer() && changesState {
		return newError(ErrKMSInvalidState, "The default key is managed by the region and cannot be changed.")
	}
	switch {
	case pending && !op.GetCancelDeletion() && (op.Disabled != nil || op.GetNewVersion() != nil || op.RotationEnabled != nil || op.GetDeletionDate() != nil):
		return newError(ErrKMSInvalidState, "%s is pending deletion.", key.GetKeyId())
	case op.GetCancelDeletion() && !pending:
		return newError(ErrKMSInvalidState, "%s is not pending deletion.", key.GetKeyId())
	case op.GetRequireEnabled() && key.GetDisabled():
		return newError(ErrKMSKeyDisabled, "%s is disabled.", key.GetKeyId())
	}
	if nv := op.GetNewVersion(); nv != nil {
		highest := uint32(0)
		for _, v := range key.GetVersions() {
			highest = max(highest, v.GetVersion())
		}
		if nv.GetVersion() != highest+1 {
			// A concurrent rotation got there first; this one is dropped.
			return newError(ErrKMSInvalidState, "%s was rotated concurrently; retry.", key.GetKeyId())
		}
	}

	if op.GetCancelDeletion() {
		key.DeletionDate = nil
		key.Disabled = true // KMS leaves a cancelled key disabled
	}
	if op.Disabled != nil {
		key.Disabled = op.GetDisabled()
	}
	if op.GetDeletionDate() != nil {
		key.DeletionDate = op.GetDeletionDate()
	}
	if op.Policy != nil {
		key.Policy = op.GetPolicy()
	}
	if op.RotationEnabled != nil {
		key.RotationEnabled = op.GetRotationEnabled()
	}
	if op.RotationPeriodDays != nil {
		key.RotationPeriodDays = op.GetRotationPeriodDays()
	}
	if op.GetNextRotationDate() != nil || op.RotationEnabled != nil {
		key.NextRotationDate = op.GetNextRotationDate()
	}
	if nv := op.GetNewVersion(); nv != nil {
		nv = proto.CloneOf(nv)
		nv.CreatedDate = timestamppb.New(now)
		key.Versions = append(key.Versions, nv)
		key.PrimaryVersion = nv.GetVersion()
		if op.GetOnDemand() {
			key.LastOnDemandRotation = timestamppb.New(now)
		}
	}
	return nil
}

func (t *txn) updateKMSKey(now time.Time, op *raftv1.UpdateKmsKey) *Result {
	k, err := t.keyring()
	if err != nil {
		return &Result{Err: err}
	}
	key := findKMSKey(k, op.GetKeyId())
	if key == nil {
		return &Result{Err: errKMSKeyNotFound(op.GetKeyId())}
	}
	if err := kmsKeyChange(now, key, op); err != nil {
		return &Result{Err: err}
	}
	t.putKeyring(k)
	return &Result{}
}

func (t *txn) setKMSAlias(op *raftv1.SetKmsAlias) *Result {
	k, err := t.keyring()
	if err != nil {
		return &Result{Err: err}
	}
	alias := op.GetAlias()
	var holder *storagev1.KmsKey
	for _, key := range k.GetKeys() {
		if slices.Contains(key.GetAliases(), alias) {
			holder = key
		}
	}
	switch {
	case op.GetCreate() && holder != nil:
		return &Result{Err: newError(ErrKMSAliasExists, "An alias with the name %s already exists", alias)}
	case !op.GetCreate() && holder == nil:
		return &Result{Err: newError(ErrKMSAliasNotFound, "Alias %s is not found.", alias)}
	case holder != nil && !holder.GetCustomer():
		return &Result{Err: newError(ErrKMSInvalidState, "Alias %s names the region's default key and cannot be changed.", alias)}
	}
	var target *storagev1.KmsKey
	if op.GetKeyId() != "" {
		if target = findKMSKey(k, op.GetKeyId()); target == nil {
			return &Result{Err: errKMSKeyNotFound(op.GetKeyId())}
		}
		if !target.GetCustomer() {
			return &Result{Err: newError(ErrKMSInvalidState, "The region's default key cannot be given aliases.")}
		}
		if target.GetDeletionDate() != nil {
			return &Result{Err: newError(ErrKMSInvalidState, "%s is pending deletion.", target.GetKeyId())}
		}
	}
	if holder != nil {
		holder.Aliases = slices.DeleteFunc(holder.Aliases, func(a string) bool { return a == alias })
	}
	if target != nil {
		target.Aliases = append(target.Aliases, alias)
	}
	t.putKeyring(k)
	return &Result{}
}

// deleteKMSKey removes a key whose deletion date has passed, with its
// material: what it protected can never be read again, as in KMS.
func (t *txn) deleteKMSKey(now time.Time, op *raftv1.DeleteKmsKey) *Result {
	k, err := t.keyring()
	if err != nil {
		return &Result{Err: err}
	}
	key := findKMSKey(k, op.GetKeyId())
	if key == nil {
		return &Result{Err: errKMSKeyNotFound(op.GetKeyId())}
	}
	if key.GetDeletionDate() == nil || now.Before(key.GetDeletionDate().AsTime()) {
		return &Result{Err: newError(ErrKMSInvalidState, "%s is not due for deletion.", key.GetKeyId())}
	}
	k.Keys = slices.DeleteFunc(k.Keys, func(x *storagev1.KmsKey) bool { return x.GetKeyId() == key.GetKeyId() })
	t.putKeyring(k)
	return &Result{}
}

// kmsWrapsKey is a key version's entry in bucketKMSWraps.
func kmsWrapsKey(keyID string, version uint32) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(keyID), 0), version)
}

// countWrap counts the data key v's KMS key version wrapped. With random
// 96-bit nonces a key may seal at most 2^32 messages; the region leader
// rolls a key over to new material well before (Store.KMSWraps).
func (t *txn) countWrap(v *storagev1.SealedValue) {
	if v == nil || v.GetKmsKeyId() == "" {
		return
	}
	b := t.tx.Bucket(bucketKMSWraps)
	k := kmsWrapsKey(v.GetKmsKeyId(), v.GetKeyVersion())
	n := uint64(0)
	if cur := b.Get(k); len(cur) == 8 {
		n = binary.BigEndian.Uint64(cur)
	}
	t.fail(b.Put(k, binary.BigEndian.AppendUint64(nil, n+1)))
}

// KMSWraps returns how many data keys (and other sealed values) version
// of KMS key keyID has wrapped, as the applied log counts them.
func (s *Store) KMSWraps(keyID string, version uint32) (uint64, error) {
	var n uint64
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketKMSWraps).Get(kmsWrapsKey(keyID, version)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return n, err
}
