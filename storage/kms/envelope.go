package kms

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"strconv"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// Domains of associated data and fingerprint input, so that no bytes made for
// one purpose are ever accepted for another.
const (
	valueDomain       = "coffer/kms/v1/value"
	dataKeyDomain     = "coffer/kms/v1/data-key"
	fingerprintDomain = "coffer/kms/v1/fingerprint"
)

// Seal encrypts one secret value for storage under envelope encryption.
//
// Each call draws a fresh AES-256 data key. The ciphertext is nonce ||
// AES-256-GCM(data key, plaintext), with associated data binding the value's
// kind, arn and versionID, so a ciphertext copied to another secret or
// version does not open. The data key is wrapped with AES-256-GCM under the
// primary version of KMS key keyID, with associated data binding the key id,
// key version, arn and versionID, and then cleared from memory.
//
// keyID must be a key id, as returned by ResolveKey or DefaultKeyID; an
// unknown one gives ErrKeyNotFound. name is the secret's name, used only for
// the fingerprint.
func (k *Keyring) Seal(keyID, name, arn, versionID string, kind storagev1.ValueKind, plaintext []byte) (*storagev1.SealedValue, error) {
	defer runtime.KeepAlive(k)
	key, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, keyID)
	}
	keyAEAD, ok := key.aead(key.primary)
	if !ok {
		return nil, fmt.Errorf("%w: key %s", ErrEncryption, keyID)
	}
	if kind != storagev1.ValueKind_VALUE_KIND_STRING && kind != storagev1.ValueKind_VALUE_KIND_BINARY {
		return nil, fmt.Errorf("%w: value kind %v is neither string nor binary", ErrEncryption, kind)
	}

	dataKey := randomKey()
	defer clear(dataKey)
	valueAEAD, err := newAEAD(dataKey)
	if err != nil {
		return nil, fmt.Errorf("%w: data key: %w", ErrEncryption, err)
	}

	return &storagev1.SealedValue{
		Kind:           kind,
		KmsKeyId:       keyID,
		KeyVersion:     key.primary,
		WrappedDataKey: keyAEAD.Seal(nil, nil, dataKey, dataKeyAD(keyID, key.primary, arn, versionID)),
		Ciphertext:     valueAEAD.Seal(nil, nil, plaintext, valueAD(kind, arn, versionID)),
		Fingerprint:    k.Fingerprint(name, kind, plaintext),
	}, nil
}

// Unseal reverses Seal for the value stored as arn's version versionID. A
// different arn or versionID, a key or key version this keyring does not
// hold, or any changed bit gives ErrDecryption.
func (k *Keyring) Unseal(v *storagev1.SealedValue, arn, versionID string) ([]byte, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: no value", ErrDecryption)
	}
	dataKey, err := k.unwrapDataKey(v, arn, versionID)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	valueAEAD, err := newAEAD(dataKey)
	if err != nil {
		return nil, fmt.Errorf("%w: data key: %w", ErrDecryption, err)
	}
	plaintext, err := valueAEAD.Open(nil, nil, v.GetCiphertext(), valueAD(v.GetKind(), arn, versionID))
	if err != nil {
		return nil, fmt.Errorf("%w: opening value", ErrDecryption)
	}
	return plaintext, nil
}

// Fingerprint returns HMAC-SHA256, under the keyring's fingerprint key, of a
// domain-separated, length-prefixed encoding of name, kind and plaintext. The
// state machine compares it to tell whether a retried request (same
// ClientRequestToken) carries the value already stored, without plaintext;
// the key keeps it from being an offline guessing oracle for the value.
func (k *Keyring) Fingerprint(name string, kind storagev1.ValueKind, plaintext []byte) []byte {
	defer runtime.KeepAlive(k)
	mac := hmac.New(sha256.New, k.fingerprintKey)
	mac.Write(associatedData(fingerprintDomain, name, kindString(kind)))
	mac.Write(binary.BigEndian.AppendUint64(nil, uint64(len(plaintext))))
	mac.Write(plaintext)
	return mac.Sum(nil)
}

// valueAD is the associated data of a value's ciphertext.
func valueAD(kind storagev1.ValueKind, arn, versionID string) []byte {
	return associatedData(valueDomain, kindString(kind), arn, versionID)
}

// dataKeyAD is the associated data of a wrapped data key.
func dataKeyAD(keyID string, keyVersion uint32, arn, versionID string) []byte {
	return associatedData(dataKeyDomain, keyID, strconv.FormatUint(uint64(keyVersion), 10), arn, versionID)
}

// kindString is the stable encoding of a value kind: its enum number, which
// protobuf never renumbers, rather than its name.
func kindString(kind storagev1.ValueKind) string {
	return strconv.FormatInt(int64(kind), 10)
}

// associatedData encodes a domain and fields so that distinct inputs never
// encode alike: each part is preceded by its length as a big-endian uint64.
func associatedData(domain string, fields ...string) []byte {
	n := 8 + len(domain)
	for _, f := range fields {
		n += 8 + len(f)
	}
	ad := make([]byte, 0, n)
	ad = appendField(ad, domain)
	for _, f := range fields {
		ad = appendField(ad, f)
	}
	return ad
}

func appendField(dst []byte, field string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(len(field)))
	return append(dst, field...)
}

// derivedKeyDomain prefixes the purpose of every key DeriveKey makes.
const derivedKeyDomain = "coffer/kms/v1/derived/"

// DeriveKey returns a 32-byte key for purpose (such as "audit-params"),
// derived with HKDF-SHA256 from the keyring's fingerprint key. Every node of
// a region opens the same keyring, so every node derives the same key, and
// keys for different purposes are independent.
func (k *Keyring) DeriveKey(purpose string) ([]byte, error) {
	defer runtime.KeepAlive(k)
	out, err := hkdf.Key(sha256.New, k.fingerprintKey, nil, derivedKeyDomain+purpose, keySize)
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	return out, nil
}
