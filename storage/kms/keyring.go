package kms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultKeyAlias is the alias of the key that protects secrets created
// without a KmsKeyId.
const DefaultKeyAlias = "alias/coffer/default"

// AWSManagedKeyAlias is accepted as a synonym of the default key, because AWS
// users write it.
const AWSManagedKeyAlias = "alias/aws/secretsmanager"

// keySize is the size of KMS key material, data keys and the fingerprint key
// in bytes (AES-256, HMAC-SHA256).
const keySize = 32

// defaultKeyDescription mirrors the description AWS gives its managed key.
const defaultKeyDescription = "Default key that protects Coffer secrets when no other key is defined"

// Domains of associated data for material sealed under the root key. Each
// sealed blob names what it is, so blobs cannot be swapped within a record.
const (
	keyMaterialDomain    = "coffer/kms/v1/key-material"
	fingerprintKeyDomain = "coffer/kms/v1/fingerprint-key"
)

// NewKeyring creates a region's first keyring: one KMS key with a random
// UUID key id and the alias DefaultKeyAlias, whose version 1 is 32 random
// bytes, and a random 32-byte fingerprint key, all sealed under root. now is
// recorded as every CreatedDate.
func NewKeyring(root []byte, now time.Time) (*storagev1.Keyring, error) {
	rootAEAD, err := newAEAD(root)
	if err != nil {
		return nil, fmt.Errorf("%w: root key: %w", ErrSealed, err)
	}
	created := timestamppb.New(now)
	keyID := newKeyID()

	material := randomKey()
	defer clear(material)
	fingerprintKey := randomKey()
	defer clear(fingerprintKey)

	return &storagev1.Keyring{
		Keys: []*storagev1.KmsKey{{
			KeyId:       keyID,
			Aliases:     []string{DefaultKeyAlias},
			Description: defaultKeyDescription,
			Versions: []*storagev1.KmsKeyVersion{{
				Version:        1,
				SealedMaterial: rootAEAD.Seal(nil, nil, material, keyMaterialAD(keyID, 1)),
				CreatedDate:    created,
			}},
			PrimaryVersion: 1,
			CreatedDate:    created,
		}},
		SealedFingerprintKey: rootAEAD.Seal(nil, nil, fingerprintKey, associatedData(fingerprintKeyDomain)),
		CreatedDate:          created,
	}, nil
}

// Keyring is an unsealed, read-only view of a stored keyring, held in memory
// by the server. It never changes after Open, so it is safe for concurrent
// use without locks; when the stored keyring changes (a new key or key
// version), the server opens a new Keyring and swaps it in.
type Keyring struct {
	defaultKeyID string
	keys         map[string]*kmsKey // by key id
	aliases      map[string]string  // alias → key id, including AWSManagedKeyAlias
	// fingerprintKey is kept as bytes because an HMAC is not safe for
	// concurrent use; each Fingerprint call builds its own.
	fingerprintKey []byte
}

// kmsKey is one unsealed KMS key. Only the AEADs are kept; the material is
// cleared once they are built.
type kmsKey struct {
	primary  uint32
	versions map[uint32]cipher.AEAD
}

// Open checks rec and unseals all of its material under root, once. A root
// key other than the one rec was sealed under, or any sealed blob that was
// altered or moved, gives ErrDecryption; a malformed record gives
// ErrInvalidKeyring.
func Open(root []byte, rec *storagev1.Keyring) (*Keyring, error) {
	rootAEAD, err := newAEAD(root)
	if err != nil {
		return nil, fmt.Errorf("%w: root key: %w", ErrSealed, err)
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: no keyring record", ErrInvalidKeyring)
	}
	if len(rec.GetKeys()) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalidKeyring)
	}

	k := &Keyring{
		keys:    make(map[string]*kmsKey, len(rec.GetKeys())),
		aliases: make(map[string]string),
	}
	for _, key := range rec.GetKeys() {
		if err := k.addKey(rootAEAD, key); err != nil {
			return nil, err
		}
	}

	defaultID, ok := k.aliases[DefaultKeyAlias]
	if !ok {
		return nil, fmt.Errorf("%w: no key has the alias %s", ErrInvalidKeyring, DefaultKeyAlias)
	}
	if id, ok := k.aliases[AWSManagedKeyAlias]; ok && id != defaultID {
		return nil, fmt.Errorf("%w: %s names key %s, not the default key", ErrInvalidKeyring, AWSManagedKeyAlias, id)
	}
	k.defaultKeyID = defaultID
	k.aliases[AWSManagedKeyAlias] = defaultID

	k.fingerprintKey, err = unsealKey(rootAEAD, rec.GetSealedFingerprintKey(), associatedData(fingerprintKeyDomain))
	if err != nil {
		return nil, fmt.Errorf("fingerprint key: %w", err)
	}
	return k, nil
}

// CheckKeyring reports whether root opens rec: nil, or the error Open
// gives (ErrDecryption for another root key). Nothing it unseals is kept.
// A snapshot is checked with it before it is installed.
func CheckKeyring(root []byte, rec *storagev1.Keyring) error {
	k, err := Open(root, rec)
	if err != nil {
		return err
	}
	clear(k.fingerprintKey)
	return nil
}

// addKey checks and unseals one stored KMS key and records it and its
// aliases in k.
func (k *Keyring) addKey(rootAEAD cipher.AEAD, rec *storagev1.KmsKey) error {
	id := rec.GetKeyId()
	if id == "" {
		return fmt.Errorf("%w: key without an id", ErrInvalidKeyring)
	}
	if strings.HasPrefix(id, "alias/") || strings.HasPrefix(id, "arn:") {
		return fmt.Errorf("%w: key id %q is an alias or ARN", ErrInvalidKeyring, id)
	}
	if _, dup := k.keys[id]; dup {
		return fmt.Errorf("%w: duplicate key id %s", ErrInvalidKeyring, id)
	}
	for _, alias := range rec.GetAliases() {
		if !strings.HasPrefix(alias, "alias/") || alias == "alias/" {
			return fmt.Errorf("%w: key %s: alias %q does not start with alias/", ErrInvalidKeyring, id, alias)
		}
		if other, dup := k.aliases[alias]; dup {
			return fmt.Errorf("%w: alias %s names keys %s and %s", ErrInvalidKeyring, alias, other, id)
		}
		k.aliases[alias] = id
	}

	key := &kmsKey{
		primary:  rec.GetPrimaryVersion(),
		versions: make(map[uint32]cipher.AEAD, len(rec.GetVersions())),
	}
	for _, v := range rec.GetVersions() {
		n := v.GetVersion()
		if n == 0 {
			return fmt.Errorf("%w: key %s: version 0", ErrInvalidKeyring, id)
		}
		if _, dup := key.versions[n]; dup {
			return fmt.Errorf("%w: key %s: duplicate version %d", ErrInvalidKeyring, id, n)
		}
		material, err := unsealKey(rootAEAD, v.GetSealedMaterial(), keyMaterialAD(id, n))
		if err != nil {
			return fmt.Errorf("key %s version %d: %w", id, n, err)
		}
		aead, err := newAEAD(material)
		clear(material)
		if err != nil {
			return fmt.Errorf("%w: key %s version %d: %w", ErrInvalidKeyring, id, n, err)
		}
		key.versions[n] = aead
	}
	if _, ok := key.versions[key.primary]; !ok {
		return fmt.Errorf("%w: key %s: primary version %d does not exist", ErrInvalidKeyring, id, key.primary)
	}
	k.keys[id] = key
	return nil
}

// DefaultKeyID returns the key id of the DefaultKeyAlias key.
func (k *Keyring) DefaultKeyID() string {
	return k.defaultKeyID
}

// ResolveKey maps what a user may write as a KmsKeyId to a key id:
//
//   - "", DefaultKeyAlias or AWSManagedKeyAlias: the default key;
//   - a key id;
//   - an alias ("alias/name") of any key;
//   - a key ARN "arn:<partition>:kms:<region>:<account>:key/<id>" or alias
//     ARN "arn:<partition>:kms:<region>:<account>:alias/<name>", matched on
//     the key or alias part only, as one region has one keyring.
//
// Anything else gives ErrKeyNotFound, wrapped with the reference.
func (k *Keyring) ResolveKey(ref string) (string, error) {
	if ref == "" {
		return k.defaultKeyID, nil
	}
	name := ref
	if strings.HasPrefix(ref, "arn:") {
		// arn:partition:service:region:account:resource
		parts := strings.SplitN(ref, ":", 6)
		if len(parts) != 6 || parts[1] == "" || parts[2] != "kms" {
			return "", fmt.Errorf("%w: %q", ErrKeyNotFound, ref)
		}
		resource := parts[5]
		switch {
		case strings.HasPrefix(resource, "key/"):
			name = strings.TrimPrefix(resource, "key/")
			if _, ok := k.keys[name]; ok {
				return name, nil
			}
			return "", fmt.Errorf("%w: %q", ErrKeyNotFound, ref)
		case strings.HasPrefix(resource, "alias/"):
			name = resource
		default:
			return "", fmt.Errorf("%w: %q", ErrKeyNotFound, ref)
		}
	}
	if strings.HasPrefix(name, "alias/") {
		if id, ok := k.aliases[name]; ok {
			return id, nil
		}
		return "", fmt.Errorf("%w: %q", ErrKeyNotFound, ref)
	}
	if _, ok := k.keys[name]; ok {
		return name, nil
	}
	return "", fmt.Errorf("%w: %q", ErrKeyNotFound, ref)
}

// keyMaterialAD is the associated data sealing one version of a key's
// material under the root key.
func keyMaterialAD(keyID string, version uint32) []byte {
	return associatedData(keyMaterialDomain, keyID, strconv.FormatUint(uint64(version), 10))
}

// unsealKey opens a 32-byte key sealed under the root key.
func unsealKey(rootAEAD cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	key, err := rootAEAD.Open(nil, nil, sealed, ad)
	if err != nil {
		return nil, ErrDecryption
	}
	if len(key) != keySize {
		clear(key)
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrInvalidKeyring, len(key), keySize)
	}
	return key, nil
}

// newAEAD returns AES-256-GCM under key with a random 96-bit nonce prepended
// to each ciphertext. Every key here seals few enough messages (one per
// secret version or keyring entry) to stay far below the 2^32 limit that
// random nonces impose.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// randomKey returns 32 bytes from crypto/rand, which never fails: it crashes
// the program instead.
func randomKey() []byte {
	key := make([]byte, keySize)
	rand.Read(key)
	return key
}

// newKeyID returns a random (version 4) UUID in its canonical form, the shape
// of an AWS KMS key id.
func newKeyID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
