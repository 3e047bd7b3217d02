package kms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// DefaultKeyAlias is the alias of the key that protects secrets created
// without a KmsKeyId.
const DefaultKeyAlias = "alias/coffer/default"

// AWSManagedKeyAlias is accepted as a synonym of the default key, because AWS
// users write it.
const AWSManagedKeyAlias = "alias/aws/secretsmanager"

// WrapLimit is how many values one version of a KMS key wraps before the
// region gives the key new material: half of the 2^32 messages AES-GCM
// with random 96-bit nonces may seal under one key (NIST SP 800-38D), so
// that the writes proposed between two checks of the count can never
// reach the bound.
const WrapLimit = 1 << 31

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
//
// Its key material and fingerprint key live in one locked region (see
// memlock.go), freed once the Keyring is unreachable. Every method that
// reads the material keeps the Keyring alive until it is done
// (runtime.KeepAlive), and builds the AEAD it needs for that call only, so
// no long-lived copy of the material is on the heap.
type Keyring struct {
	defaultKeyID string
	keys         map[string]*kmsKey // by key id
	aliases      map[string]string  // alias → key id, including AWSManagedKeyAlias
	// fingerprintKey is in region; each Fingerprint call builds its own
	// HMAC (an HMAC is not safe for concurrent use).
	fingerprintKey []byte
	region         *lockedRegion
	// records are the keys' stored records (state, policy, rotation),
	// without their sealed material; never changed after Open.
	records  map[string]*storagev1.KmsKey
	revision uint64
}

// kmsKey is one unsealed KMS key: its versions' material, in the keyring's
// locked region.
type kmsKey struct {
	primary  uint32
	versions map[uint32][]byte
}

// aead is the AEAD of one version of a key, built for one call.
func (k *kmsKey) aead(version uint32) (cipher.AEAD, bool) {
	material, ok := k.versions[version]
	if !ok {
		return nil, false
	}
	a, err := newAEAD(material)
	return a, err == nil
}

// Locked reports whether the keyring's material is locked against swapping.
func (k *Keyring) Locked() bool { return k.region.locked }

// Open checks rec and unseals all of its material under root, once, into
// memory locked as mode says (LockRequired fails with ErrMemoryLock when it
// cannot be locked). A root key other than the one rec was sealed under, or
// any sealed blob that was altered or moved, gives ErrDecryption; a
// malformed record gives ErrInvalidKeyring.
func Open(root []byte, rec *storagev1.Keyring, mode LockMode) (*Keyring, error) {
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
	slots := 1 // the fingerprint key
	for _, key := range rec.GetKeys() {
		slots += len(key.GetVersions())
	}
	region, err := newLockedRegion(slots*keySize, mode)
	if err != nil {
		return nil, err
	}
	k := &Keyring{
		keys:     make(map[string]*kmsKey, len(rec.GetKeys())),
		aliases:  make(map[string]string),
		region:   region,
		records:  make(map[string]*storagev1.KmsKey, len(rec.GetKeys())),
		revision: rec.GetRevision(),
	}
	if err := k.load(rootAEAD, rec); err != nil {
		region.free()
		return nil, err
	}
	runtime.AddCleanup(k, (*lockedRegion).free, region)
	return k, nil
}

// load unseals rec's material into k's region, a key size per slot.
func (k *Keyring) load(rootAEAD cipher.AEAD, rec *storagev1.Keyring) error {
	slots := k.region.mem
	next := func() []byte {
		s := slots[:0:keySize]
		slots = slots[keySize:]
		return s
	}
	for _, key := range rec.GetKeys() {
		if err := k.addKey(rootAEAD, key, next); err != nil {
			return err
		}
	}

	defaultID, ok := k.aliases[DefaultKeyAlias]
	if !ok {
		return fmt.Errorf("%w: no key has the alias %s", ErrInvalidKeyring, DefaultKeyAlias)
	}
	if id, ok := k.aliases[AWSManagedKeyAlias]; ok && id != defaultID {
		return fmt.Errorf("%w: %s names key %s, not the default key", ErrInvalidKeyring, AWSManagedKeyAlias, id)
	}
	k.defaultKeyID = defaultID
	k.aliases[AWSManagedKeyAlias] = defaultID

	fp, err := unsealKeyInto(next(), rootAEAD, rec.GetSealedFingerprintKey(), associatedData(fingerprintKeyDomain))
	if err != nil {
		return fmt.Errorf("fingerprint key: %w", err)
	}
	k.fingerprintKey = fp
	return nil
}

// CheckKeyring reports whether root opens rec: nil, or the error Open
// gives (ErrDecryption for another root key). Nothing it unseals is kept.
// A snapshot is checked with it before it is installed.
func CheckKeyring(root []byte, rec *storagev1.Keyring) error {
	k, err := Open(root, rec, LockBestEffort)
	if err != nil {
		return err
	}
	k.region.free()
	return nil
}

// addKey checks and unseals one stored KMS key into slots next hands out,
// and records it and its aliases in k.
func (k *Keyring) addKey(rootAEAD cipher.AEAD, rec *storagev1.KmsKey, next func() []byte) error {
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
		versions: make(map[uint32][]byte, len(rec.GetVersions())),
	}
	for _, v := range rec.GetVersions() {
		n := v.GetVersion()
		if n == 0 {
			return fmt.Errorf("%w: key %s: version 0", ErrInvalidKeyring, id)
		}
		if _, dup := key.versions[n]; dup {
			return fmt.Errorf("%w: key %s: duplicate version %d", ErrInvalidKeyring, id, n)
		}
		material, err := unsealKeyInto(next(), rootAEAD, v.GetSealedMaterial(), keyMaterialAD(id, n))
		if err != nil {
			return fmt.Errorf("key %s version %d: %w", id, n, err)
		}
		key.versions[n] = material
	}
	if _, ok := key.versions[key.primary]; !ok {
		return fmt.Errorf("%w: key %s: primary version %d does not exist", ErrInvalidKeyring, id, key.primary)
	}
	k.keys[id] = key
	meta := proto.CloneOf(rec)
	for _, v := range meta.GetVersions() {
		v.SealedMaterial = nil
	}
	k.records[id] = meta
	return nil
}

// Revision is the stored keyring's revision this Keyring was opened at.
func (k *Keyring) Revision() uint64 { return k.revision }

// Key returns the record of key id (its state, aliases, policy and
// rotation settings, without material), or nil. The caller must not
// change it.
func (k *Keyring) Key(id string) *storagev1.KmsKey { return k.records[id] }

// Keys returns the records of every key, ordered by creation date then
// id. The caller must not change them.
func (k *Keyring) Keys() []*storagev1.KmsKey {
	out := make([]*storagev1.KmsKey, 0, len(k.records))
	for _, r := range k.records {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *storagev1.KmsKey) int {
		if c := a.GetCreatedDate().AsTime().Compare(b.GetCreatedDate().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.GetKeyId(), b.GetKeyId())
	})
	return out
}

// NewKeyID returns a fresh key id: a random UUID, as KMS key ids are.
func NewKeyID() string { return newKeyID() }

// NewKeyVersion makes version of key keyID: 32 random bytes sealed under
// root. CreateKey proposes version 1; a rotation proposes the next one.
func NewKeyVersion(root []byte, keyID string, version uint32) (*storagev1.KmsKeyVersion, error) {
	rootAEAD, err := newAEAD(root)
	if err != nil {
		return nil, fmt.Errorf("%w: root key: %w", ErrSealed, err)
	}
	material := randomKey()
	defer clear(material)
	return &storagev1.KmsKeyVersion{
		Version:        version,
		SealedMaterial: rootAEAD.Seal(nil, nil, material, keyMaterialAD(keyID, version)),
	}, nil
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

// unsealKeyInto opens a 32-byte key sealed under the root key into slot (of
// capacity keySize, in locked memory), and returns it there.
func unsealKeyInto(slot []byte, rootAEAD cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	key, err := rootAEAD.Open(slot[:0], nil, sealed, ad)
	if err != nil {
		return nil, ErrDecryption
	}
	if len(key) != keySize {
		// Longer than the slot, it was appended on the heap; either way
		// nothing of it stays.
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
