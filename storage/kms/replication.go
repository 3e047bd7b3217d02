package kms

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"runtime"
	"slices"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Cross-region replication ships a value's ciphertext unchanged and only
// re-wraps its data key: from the primary's KMS key to the pairwise
// replication key of the two regions, and on arrival from the pairwise key
// to the destination's KMS key. The pairwise key is never stored or sent:
// each region derives an X25519 pairing key from its root key, pairing
// exchanges the public halves, and each side computes the same shared key.
const (
	pairingDomain        = "coffer/kms/v1/region-pairing"
	pairwiseDomain       = "coffer/kms/v1/pairwise-replication"
	replicaDataKeyDomain = "coffer/kms/v1/replica-data-key"
)

// PairingKey derives the region's X25519 pairing key from its root key, so
// every node of the region holds the same one and nothing is stored.
func PairingKey(root []byte) (*ecdh.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, root, nil, pairingDomain, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: pairing key: %w", ErrEncryption, err)
	}
	defer clear(seed)
	k, err := ecdh.X25519().NewPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: pairing key: %w", ErrEncryption, err)
	}
	return k, nil
}

// PairwiseKey is the replication key regions local and peer share: X25519
// of local's pairing key and peer's public key, through HKDF bound to both
// region names in a fixed order, so both sides compute the same bytes.
func PairwiseKey(root, peerPublic []byte, local, peer string) ([]byte, error) {
	priv, err := PairingKey(root)
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.X25519().NewPublicKey(peerPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: peer pairing key: %w", ErrEncryption, err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: pairing: %w", ErrEncryption, err)
	}
	defer clear(shared)
	regions := []string{local, peer}
	slices.Sort(regions)
	key, err := hkdf.Key(sha256.New, shared, nil, string(associatedData(pairwiseDomain, regions...)), keySize)
	if err != nil {
		return nil, fmt.Errorf("%w: pairwise key: %w", ErrEncryption, err)
	}
	return key, nil
}

// replicaDataKeyAD binds a data key in transit to the direction, the value
// and its version, so it opens only for that value shipped that way.
func replicaDataKeyAD(src, dst, arn, versionID string, kind storagev1.ValueKind) []byte {
	return associatedData(replicaDataKeyDomain, src, dst, arn, versionID, kindString(kind))
}

// ExportValue returns v for shipping from region src to dst: the same
// ciphertext, its data key unwrapped from this keyring and wrapped under
// pairwise (KmsKeyId empty, KeyVersion 0). arn is the value's ARN (the
// associated data it was sealed with).
func (k *Keyring) ExportValue(v *storagev1.SealedValue, arn, versionID string, pairwise []byte, src, dst string) (*storagev1.SealedValue, error) {
	defer runtime.KeepAlive(k)
	dataKey, err := k.unwrapDataKey(v, arn, versionID)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	aead, err := newAEAD(pairwise)
	if err != nil {
		return nil, fmt.Errorf("%w: pairwise key: %w", ErrEncryption, err)
	}
	out := proto.CloneOf(v)
	out.KmsKeyId, out.KeyVersion = "", 0
	out.WrappedDataKey = aead.Seal(nil, nil, dataKey, replicaDataKeyAD(src, dst, arn, versionID, v.GetKind()))
	return out, nil
}

// ImportValue reverses ExportValue on the destination: the data key is
// unwrapped from pairwise and wrapped under the primary version of this
// keyring's key keyID. A value shipped by another region, for another
// value, or altered gives ErrDecryption.
func (k *Keyring) ImportValue(v *storagev1.SealedValue, arn, versionID string, pairwise []byte, src, dst, keyID string) (*storagev1.SealedValue, error) {
	defer runtime.KeepAlive(k)
	key, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, keyID)
	}
	keyAEAD, ok := key.aead(key.primary)
	if !ok {
		return nil, fmt.Errorf("%w: key %s", ErrEncryption, keyID)
	}
	aead, err := newAEAD(pairwise)
	if err != nil {
		return nil, fmt.Errorf("%w: pairwise key: %w", ErrDecryption, err)
	}
	dataKey, err := aead.Open(nil, nil, v.GetWrappedDataKey(), replicaDataKeyAD(src, dst, arn, versionID, v.GetKind()))
	if err != nil {
		return nil, fmt.Errorf("%w: unwrapping shipped data key", ErrDecryption)
	}
	defer clear(dataKey)
	out := proto.CloneOf(v)
	out.KmsKeyId, out.KeyVersion = keyID, key.primary
	out.WrappedDataKey = keyAEAD.Seal(nil, nil, dataKey, dataKeyAD(keyID, key.primary, arn, versionID))
	return out, nil
}

// unwrapDataKey opens a value's data key under the KMS key version that
// wrapped it. The caller clears it.
func (k *Keyring) unwrapDataKey(v *storagev1.SealedValue, arn, versionID string) ([]byte, error) {
	defer runtime.KeepAlive(k)
	key, ok := k.keys[v.GetKmsKeyId()]
	if !ok {
		return nil, fmt.Errorf("%w: key %q is not in the keyring", ErrDecryption, v.GetKmsKeyId())
	}
	keyAEAD, ok := key.aead(v.GetKeyVersion())
	if !ok {
		return nil, fmt.Errorf("%w: key %s has no version %d", ErrDecryption, v.GetKmsKeyId(), v.GetKeyVersion())
	}
	dataKey, err := keyAEAD.Open(nil, nil, v.GetWrappedDataKey(), dataKeyAD(v.GetKmsKeyId(), v.GetKeyVersion(), arn, versionID))
	if err != nil {
		return nil, fmt.Errorf("%w: unwrapping data key", ErrDecryption)
	}
	return dataKey, nil
}
