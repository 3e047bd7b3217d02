package kms

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"google.golang.org/protobuf/proto"
)

const (
	testARN       = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"
	testVersionID = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"
	testName      = "prod/db"
)

var (
	kindText   = storagev1.ValueKind_VALUE_KIND_STRING
	kindBinary = storagev1.ValueKind_VALUE_KIND_BINARY
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// newTestKeyring returns a fresh root key, the keyring record sealed under
// it, and that record opened.
func newTestKeyring(t testing.TB) ([]byte, *storagev1.Keyring, *Keyring) {
	t.Helper()
	root := randomKey()
	rec, err := NewKeyring(root, testNow)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	k, err := Open(root, rec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return root, rec, k
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestNewKeyringRecord(t *testing.T) {
	root, rec, k := newTestKeyring(t)

	if len(rec.Keys) != 1 {
		t.Fatalf("keys = %d, want 1", len(rec.Keys))
	}
	key := rec.Keys[0]
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(key.KeyId) {
		t.Errorf("key id %q is not a version 4 UUID", key.KeyId)
	}
	if len(key.Aliases) != 1 || key.Aliases[0] != DefaultKeyAlias {
		t.Errorf("aliases = %q, want [%s]", key.Aliases, DefaultKeyAlias)
	}
	if key.PrimaryVersion != 1 || len(key.Versions) != 1 || key.Versions[0].Version != 1 {
		t.Errorf("primary version %d, versions %v; want one version 1", key.PrimaryVersion, key.Versions)
	}
	for what, ts := range map[string]time.Time{
		"keyring": rec.CreatedDate.AsTime(),
		"key":     key.CreatedDate.AsTime(),
		"version": key.Versions[0].CreatedDate.AsTime(),
	} {
		if !ts.Equal(testNow) {
			t.Errorf("%s created date = %v, want %v", what, ts, testNow)
		}
	}
	if got := k.DefaultKeyID(); got != key.KeyId {
		t.Errorf("DefaultKeyID = %q, want %q", got, key.KeyId)
	}

	// Two keyrings never share key ids or keys.
	_, rec2, k2 := newTestKeyring(t)
	if rec2.Keys[0].KeyId == key.KeyId {
		t.Errorf("two keyrings got the same key id %s", key.KeyId)
	}
	if bytes.Equal(k.fingerprintKey, k2.fingerprintKey) {
		t.Error("two keyrings got the same fingerprint key")
	}
	if _, err := NewKeyring(root[:16], testNow); !errors.Is(err, ErrSealed) {
		t.Errorf("NewKeyring with a 16-byte root: err = %v, want ErrSealed", err)
	}
}

func TestSealUnsealRoundTrip(t *testing.T) {
	_, _, k := newTestKeyring(t)

	tests := []struct {
		name      string
		kind      storagev1.ValueKind
		plaintext []byte
	}{
		{"string", kindText, []byte(`{"username":"admin","password":"hunter2"}`)},
		{"binary", kindBinary, []byte{0x00, 0xff, 0x10, 0x00, 0x7f}},
		{"empty string", kindText, []byte{}},
		{"empty binary", kindBinary, nil},
		{"64 KiB binary", kindBinary, randomBytes(t, 64<<10)},
		{"64 KiB string", kindText, bytes.Repeat([]byte("s3cr3t-"), (64<<10)/7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := k.Seal(k.DefaultKeyID(), testName, testARN, testVersionID, tt.kind, tt.plaintext)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if v.Kind != tt.kind || v.KmsKeyId != k.DefaultKeyID() || v.KeyVersion != 1 {
				t.Errorf("sealed kind %v key %q version %d; want %v %q 1", v.Kind, v.KmsKeyId, v.KeyVersion, tt.kind, k.DefaultKeyID())
			}
			if want := len(tt.plaintext) + 28; len(v.Ciphertext) != want {
				t.Errorf("ciphertext is %d bytes, want %d (nonce + value + tag)", len(v.Ciphertext), want)
			}
			if want := k.Fingerprint(testName, tt.kind, tt.plaintext); !bytes.Equal(v.Fingerprint, want) {
				t.Errorf("fingerprint = %x, want %x", v.Fingerprint, want)
			}

			got, err := k.Unseal(v, testARN, testVersionID)
			if err != nil {
				t.Fatalf("Unseal: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Unseal returned %d bytes that differ from the %d sealed", len(got), len(tt.plaintext))
			}
		})
	}
}

func TestSealRejects(t *testing.T) {
	_, _, k := newTestKeyring(t)
	tests := []struct {
		name  string
		keyID string
		kind  storagev1.ValueKind
		want  error
	}{
		{"unknown key id", "no-such-key", kindText, ErrKeyNotFound},
		{"alias instead of key id", DefaultKeyAlias, kindText, ErrKeyNotFound},
		{"unspecified kind", k.DefaultKeyID(), storagev1.ValueKind_VALUE_KIND_UNSPECIFIED, ErrEncryption},
		{"unknown kind", k.DefaultKeyID(), storagev1.ValueKind(7), ErrEncryption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := k.Seal(tt.keyID, testName, testARN, testVersionID, tt.kind, []byte("value"))
			if !errors.Is(err, tt.want) || v != nil {
				t.Errorf("Seal = %v, %v; want nil, %v", v, err, tt.want)
			}
		})
	}
}

func TestUnsealRejects(t *testing.T) {
	_, _, k := newTestKeyring(t)
	_, _, stranger := newTestKeyring(t)
	plaintext := []byte("correct horse battery staple")

	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name      string
		keyring   *Keyring
		arn       string
		versionID string
		tamper    func(v *storagev1.SealedValue)
	}{
		{name: "wrong arn", arn: testARN + "x"},
		{name: "other secret's arn", arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-XyZaBc"},
		{name: "wrong version id", versionID: "EXAMPLE2-90ab-cdef-fedc-ba987EXAMPLE"},
		{name: "arn and version id swapped", arn: testVersionID, versionID: testARN},
		{name: "flipped nonce bit", tamper: func(v *storagev1.SealedValue) { v.Ciphertext = flip(v.Ciphertext, 0) }},
		{name: "flipped ciphertext bit", tamper: func(v *storagev1.SealedValue) { v.Ciphertext = flip(v.Ciphertext, 14) }},
		{name: "flipped tag bit", tamper: func(v *storagev1.SealedValue) { v.Ciphertext = flip(v.Ciphertext, -1) }},
		{name: "truncated ciphertext", tamper: func(v *storagev1.SealedValue) { v.Ciphertext = v.Ciphertext[:10] }},
		{name: "no ciphertext", tamper: func(v *storagev1.SealedValue) { v.Ciphertext = nil }},
		{name: "flipped wrapped key bit", tamper: func(v *storagev1.SealedValue) { v.WrappedDataKey = flip(v.WrappedDataKey, 20) }},
		{name: "flipped wrapped key tag", tamper: func(v *storagev1.SealedValue) { v.WrappedDataKey = flip(v.WrappedDataKey, -1) }},
		{name: "no wrapped key", tamper: func(v *storagev1.SealedValue) { v.WrappedDataKey = nil }},
		{name: "kind changed", tamper: func(v *storagev1.SealedValue) { v.Kind = kindBinary }},
		{name: "key version changed", tamper: func(v *storagev1.SealedValue) { v.KeyVersion = 2 }},
		{name: "key id changed", tamper: func(v *storagev1.SealedValue) { v.KmsKeyId = stranger.DefaultKeyID() }},
		{name: "keyring under another root key", keyring: stranger},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := k.Seal(k.DefaultKeyID(), testName, testARN, testVersionID, kindText, plaintext)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if tt.tamper != nil {
				tt.tamper(v)
			}
			keyring, arn, versionID := k, testARN, testVersionID
			if tt.keyring != nil {
				keyring = tt.keyring
			}
			if tt.arn != "" {
				arn = tt.arn
			}
			if tt.versionID != "" {
				versionID = tt.versionID
			}
			got, err := keyring.Unseal(v, arn, versionID)
			if !errors.Is(err, ErrDecryption) {
				t.Fatalf("Unseal err = %v, want ErrDecryption", err)
			}
			if got != nil {
				t.Errorf("Unseal returned %d bytes alongside its error", len(got))
			}
			if strings.Contains(err.Error(), string(plaintext)) {
				t.Errorf("error %q contains the plaintext", err)
			}
		})
	}

	if _, err := k.Unseal(nil, testARN, testVersionID); !errors.Is(err, ErrDecryption) {
		t.Errorf("Unseal(nil) err = %v, want ErrDecryption", err)
	}
}

// A value sealed for one secret version must not open as another, even when
// its data key is moved along with it.
func TestUnsealRejectsSwappedParts(t *testing.T) {
	_, _, k := newTestKeyring(t)
	a, err := k.Seal(k.DefaultKeyID(), testName, testARN, "v1", kindText, []byte("value a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal(k.DefaultKeyID(), testName, testARN, "v2", kindText, []byte("value b"))
	if err != nil {
		t.Fatal(err)
	}
	mixed := proto.Clone(a).(*storagev1.SealedValue)
	mixed.Ciphertext = b.Ciphertext
	if _, err := k.Unseal(mixed, testARN, "v1"); !errors.Is(err, ErrDecryption) {
		t.Errorf("a's data key with b's ciphertext: err = %v, want ErrDecryption", err)
	}
	if _, err := k.Unseal(a, testARN, "v2"); !errors.Is(err, ErrDecryption) {
		t.Errorf("a unsealed as v2: err = %v, want ErrDecryption", err)
	}
}

func TestOpenRejectsWrongRootOrMovedBlobs(t *testing.T) {
	root, rec, _ := newTestKeyring(t)
	tests := []struct {
		name   string
		root   []byte
		tamper func(rec *storagev1.Keyring)
	}{
		{name: "another root key", root: randomKey()},
		{name: "fingerprint key swapped with key material", tamper: func(rec *storagev1.Keyring) {
			m := rec.Keys[0].Versions[0]
			m.SealedMaterial, rec.SealedFingerprintKey = rec.SealedFingerprintKey, m.SealedMaterial
		}},
		{name: "key id changed", tamper: func(rec *storagev1.Keyring) {
			rec.Keys[0].KeyId = "00000000-0000-4000-8000-000000000000"
		}},
		{name: "version number changed", tamper: func(rec *storagev1.Keyring) {
			rec.Keys[0].Versions[0].Version = 2
			rec.Keys[0].PrimaryVersion = 2
		}},
		{name: "flipped material bit", tamper: func(rec *storagev1.Keyring) {
			rec.Keys[0].Versions[0].SealedMaterial[5] ^= 0x80
		}},
		{name: "missing fingerprint key", tamper: func(rec *storagev1.Keyring) { rec.SealedFingerprintKey = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := proto.Clone(rec).(*storagev1.Keyring)
			if tt.tamper != nil {
				tt.tamper(r)
			}
			openWith := root
			if tt.root != nil {
				openWith = tt.root
			}
			k, err := Open(openWith, r)
			if !errors.Is(err, ErrDecryption) || k != nil {
				t.Errorf("Open = %v, %v; want nil, ErrDecryption", k, err)
			}
		})
	}
}

func TestOpenRejectsMalformedKeyring(t *testing.T) {
	root, rec, _ := newTestKeyring(t)
	tests := []struct {
		name   string
		tamper func(rec *storagev1.Keyring)
	}{
		{"no keys", func(rec *storagev1.Keyring) { rec.Keys = nil }},
		{"no default alias", func(rec *storagev1.Keyring) { rec.Keys[0].Aliases = []string{"alias/other"} }},
		{"alias without prefix", func(rec *storagev1.Keyring) { rec.Keys[0].Aliases = append(rec.Keys[0].Aliases, "other") }},
		{"empty key id", func(rec *storagev1.Keyring) { rec.Keys[0].KeyId = "" }},
		{"duplicate key", func(rec *storagev1.Keyring) {
			dup := proto.Clone(rec.Keys[0]).(*storagev1.KmsKey)
			dup.Aliases = nil
			rec.Keys = append(rec.Keys, dup)
		}},
		{"duplicate version", func(rec *storagev1.Keyring) {
			rec.Keys[0].Versions = append(rec.Keys[0].Versions, rec.Keys[0].Versions[0])
		}},
		{"version 0", func(rec *storagev1.Keyring) { rec.Keys[0].Versions[0].Version = 0 }},
		{"missing primary version", func(rec *storagev1.Keyring) { rec.Keys[0].PrimaryVersion = 3 }},
		{"no versions", func(rec *storagev1.Keyring) { rec.Keys[0].Versions = nil }},
		{"AWS alias on another key", func(rec *storagev1.Keyring) {
			rec.Keys = append(rec.Keys, rotatedKey(t, root, "11111111-1111-4111-8111-111111111111", AWSManagedKeyAlias))
		}},
		{"default alias on two keys", func(rec *storagev1.Keyring) {
			rec.Keys = append(rec.Keys, rotatedKey(t, root, "11111111-1111-4111-8111-111111111111", DefaultKeyAlias))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := proto.Clone(rec).(*storagev1.Keyring)
			tt.tamper(r)
			k, err := Open(root, r)
			if !errors.Is(err, ErrInvalidKeyring) || k != nil {
				t.Errorf("Open = %v, %v; want nil, ErrInvalidKeyring", k, err)
			}
		})
	}
	if _, err := Open(root, nil); !errors.Is(err, ErrInvalidKeyring) {
		t.Errorf("Open(nil record) err = %v, want ErrInvalidKeyring", err)
	}
	if _, err := Open(root[:31], rec); !errors.Is(err, ErrSealed) {
		t.Errorf("Open with a 31-byte root err = %v, want ErrSealed", err)
	}
}

// rotatedKey builds a stored key with versions 1 and 2 (primary 2) sealed
// under root, as key rotation will.
func rotatedKey(t *testing.T, root []byte, keyID string, aliases ...string) *storagev1.KmsKey {
	t.Helper()
	rootAEAD, err := newAEAD(root)
	if err != nil {
		t.Fatal(err)
	}
	key := &storagev1.KmsKey{KeyId: keyID, Aliases: aliases, PrimaryVersion: 2}
	for v := uint32(1); v <= 2; v++ {
		key.Versions = append(key.Versions, &storagev1.KmsKeyVersion{
			Version:        v,
			SealedMaterial: rootAEAD.Seal(nil, nil, randomKey(), keyMaterialAD(keyID, v)),
		})
	}
	return key
}

func TestKeyRotationKeepsOldVersionsReadable(t *testing.T) {
	root, rec, _ := newTestKeyring(t)
	const keyID = "22222222-2222-4222-8222-222222222222"
	rotated := rotatedKey(t, root, keyID, "alias/app")
	rec.Keys = append(rec.Keys, rotated)

	// Seal under version 1 by opening the record while 1 is primary.
	rotated.PrimaryVersion = 1
	before, err := Open(root, rec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	old, err := before.Seal(keyID, testName, testARN, "v1", kindText, []byte("old"))
	if err != nil || old.KeyVersion != 1 {
		t.Fatalf("Seal under version 1 = version %d, %v", old.GetKeyVersion(), err)
	}

	rotated.PrimaryVersion = 2
	after, err := Open(root, rec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	fresh, err := after.Seal(keyID, testName, testARN, "v2", kindText, []byte("new"))
	if err != nil || fresh.KeyVersion != 2 {
		t.Fatalf("Seal under version 2 = version %d, %v", fresh.GetKeyVersion(), err)
	}
	for _, c := range []struct {
		v         *storagev1.SealedValue
		versionID string
		want      string
	}{{old, "v1", "old"}, {fresh, "v2", "new"}} {
		got, err := after.Unseal(c.v, testARN, c.versionID)
		if err != nil || string(got) != c.want {
			t.Errorf("Unseal %s = %q, %v; want %q", c.versionID, got, err, c.want)
		}
	}
}

func TestSealIsRandomizedFingerprintIsNot(t *testing.T) {
	_, _, k := newTestKeyring(t)
	plaintext := []byte("same value")
	a, err := k.Seal(k.DefaultKeyID(), testName, testARN, testVersionID, kindText, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal(k.DefaultKeyID(), testName, testARN, testVersionID, kindText, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Ciphertext, b.Ciphertext) {
		t.Error("two Seals of the same value gave the same ciphertext")
	}
	if bytes.Equal(a.WrappedDataKey, b.WrappedDataKey) {
		t.Error("two Seals of the same value gave the same wrapped data key")
	}
	if len(a.Fingerprint) != 32 || !bytes.Equal(a.Fingerprint, b.Fingerprint) {
		t.Errorf("fingerprints %x and %x; want equal and 32 bytes", a.Fingerprint, b.Fingerprint)
	}
}

func TestFingerprintSeparatesInputs(t *testing.T) {
	_, _, k := newTestKeyring(t)
	_, _, other := newTestKeyring(t)
	type input struct {
		keyring   *Keyring
		name      string
		kind      storagev1.ValueKind
		plaintext string
	}
	base := input{k, "prod/db", kindText, "hunter2"}
	tests := []struct {
		name  string
		other input
	}{
		{"different name", input{k, "prod/api", kindText, "hunter2"}},
		{"different kind", input{k, "prod/db", kindBinary, "hunter2"}},
		{"different value", input{k, "prod/db", kindText, "hunter3"}},
		{"boundary moved between name and value", input{k, "prod/dbh", kindText, "unter2"}},
		{"different keyring", input{other, "prod/db", kindText, "hunter2"}},
	}
	want := base.keyring.Fingerprint(base.name, base.kind, []byte(base.plaintext))
	if again := k.Fingerprint(base.name, base.kind, []byte(base.plaintext)); !bytes.Equal(want, again) {
		t.Fatalf("Fingerprint is not deterministic: %x then %x", want, again)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.other.keyring.Fingerprint(tt.other.name, tt.other.kind, []byte(tt.other.plaintext))
			if bytes.Equal(got, want) {
				t.Errorf("fingerprint %x equals the base input's", got)
			}
		})
	}
}

func TestResolveKey(t *testing.T) {
	root, rec, _ := newTestKeyring(t)
	const appKeyID = "33333333-3333-4333-8333-333333333333"
	rec.Keys = append(rec.Keys, rotatedKey(t, root, appKeyID, "alias/app/payments", "alias/legacy"))
	k, err := Open(root, rec)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	def := k.DefaultKeyID()
	const arnPrefix = "arn:aws:kms:us-east-1:123456789012:"

	tests := []struct {
		ref  string
		want string // "" means ErrKeyNotFound
	}{
		{"", def},
		{DefaultKeyAlias, def},
		{AWSManagedKeyAlias, def},
		{def, def},
		{appKeyID, appKeyID},
		{"alias/app/payments", appKeyID},
		{"alias/legacy", appKeyID},
		{arnPrefix + "key/" + def, def},
		{arnPrefix + "key/" + appKeyID, appKeyID},
		{"arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/" + appKeyID, appKeyID},
		{arnPrefix + "alias/app/payments", appKeyID},
		{arnPrefix + "alias/coffer/default", def},
		{arnPrefix + "alias/aws/secretsmanager", def},
		{"alias/unknown", ""},
		{"44444444-4444-4444-8444-444444444444", ""},
		{arnPrefix + "key/44444444-4444-4444-8444-444444444444", ""},
		{arnPrefix + "alias/unknown", ""},
		{arnPrefix + "key/alias/app/payments", ""},
		{arnPrefix + "alias/", ""},
		{"arn:aws:secretsmanager:us-east-1:123456789012:key/" + appKeyID, ""},
		{"arn:aws:kms:us-east-1:key/" + appKeyID, ""},
		{"key/" + appKeyID, ""},
		{"alias/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := k.ResolveKey(tt.ref)
			if tt.want == "" {
				if !errors.Is(err, ErrKeyNotFound) || got != "" {
					t.Fatalf("ResolveKey = %q, %v; want ErrKeyNotFound", got, err)
				}
				if !strings.Contains(err.Error(), tt.ref) {
					t.Errorf("error %q does not name the reference", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ResolveKey = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	if err := GenerateKeyFile(path); err != nil {
		t.Fatalf("GenerateKeyFile: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %#o, want 0600", info.Mode().Perm())
	}
	contents, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(contents, []byte("\n")) {
		t.Errorf("key file does not end in a newline")
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(contents), "\n"))
	if err != nil || len(decoded) != 32 {
		t.Fatalf("key file decodes to %d bytes, %v; want 32", len(decoded), err)
	}

	key, err := FileSeal{Path: path}.RootKey()
	if err != nil {
		t.Fatalf("RootKey: %v", err)
	}
	if !bytes.Equal(key, decoded) {
		t.Error("RootKey does not return the key written")
	}
	if _, err := NewKeyring(key, testNow); err != nil {
		t.Errorf("NewKeyring with the generated key: %v", err)
	}

	err = GenerateKeyFile(path)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second GenerateKeyFile err = %v, want fs.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(after, contents) {
		t.Errorf("second GenerateKeyFile changed the key file")
	}

	other := filepath.Join(t.TempDir(), "root.key")
	if err := GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	if otherKey, _ := (FileSeal{Path: other}).RootKey(); bytes.Equal(otherKey, key) {
		t.Error("two generated key files hold the same key")
	}
}

func TestFileSealRefuses(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(randomBytes(t, 32))
	tests := []struct {
		name     string
		contents string
		mode     fs.FileMode
		dir      bool
	}{
		{name: "world readable", contents: good + "\n", mode: 0o644},
		{name: "group readable", contents: good + "\n", mode: 0o640},
		{name: "other writable", contents: good + "\n", mode: 0o602},
		{name: "short key", contents: base64.StdEncoding.EncodeToString(randomBytes(t, 16)) + "\n", mode: 0o600},
		{name: "long key", contents: base64.StdEncoding.EncodeToString(randomBytes(t, 33)) + "\n", mode: 0o600},
		{name: "empty file", contents: "", mode: 0o600},
		{name: "not base64", contents: strings.Repeat("!", 44) + "\n", mode: 0o600},
		{name: "url-safe base64", contents: base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)) + "\n", mode: 0o600},
		{name: "oversized file", contents: strings.Repeat("A", 8192), mode: 0o600},
		{name: "directory", dir: true},
		{name: "missing file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mode&0o077 != 0 && runtime.GOOS == "windows" {
				t.Skip("no Unix permissions on Windows")
			}
			path := filepath.Join(t.TempDir(), "root.key")
			switch {
			case tt.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case tt.mode != 0:
				if err := os.WriteFile(path, []byte(tt.contents), tt.mode); err != nil {
					t.Fatal(err)
				}
				// WriteFile's mode is filtered by the umask; set it exactly.
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			key, err := FileSeal{Path: path}.RootKey()
			if !errors.Is(err, ErrSealed) || key != nil {
				t.Fatalf("RootKey = %d bytes, %v; want nil, ErrSealed", len(key), err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the key file", err)
			}
			if tt.contents != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.contents)[:8]) {
				t.Errorf("error %q quotes the key file's contents", err)
			}
		})
	}
}

func TestFileSealAcceptsSurroundingWhitespace(t *testing.T) {
	want := randomBytes(t, 32)
	path := filepath.Join(t.TempDir(), "root.key")
	if err := os.WriteFile(path, []byte("  "+base64.StdEncoding.EncodeToString(want)+"\r\n\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	got, err := FileSeal{Path: path}.RootKey()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("RootKey = %d bytes, %v; want the 32 bytes written", len(got), err)
	}
}

// Stored records are ciphertext and metadata only: neither a sealed value nor
// the keyring may carry the plaintext, the root key or unsealed key material.
func TestStoredBytesHoldNoSecrets(t *testing.T) {
	root, rec, k := newTestKeyring(t)
	plaintext := []byte("-----BEGIN PRIVATE KEY----- do not store me in the clear")
	v, err := k.Seal(k.DefaultKeyID(), testName, testARN, testVersionID, kindText, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	sealedValue, err := proto.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}

	secrets := map[string][]byte{
		"plaintext":                 plaintext,
		"plaintext prefix":          plaintext[:16],
		"root key":                  root,
		"root key base64":           []byte(base64.StdEncoding.EncodeToString(root)),
		"fingerprint key":           k.fingerprintKey,
		"root key half":             root[:16],
		"fingerprint key last half": k.fingerprintKey[16:],
	}
	stored := map[string][]byte{
		"ciphertext":         v.Ciphertext,
		"wrapped data key":   v.WrappedDataKey,
		"sealed value proto": sealedValue,
		"keyring proto":      keyring,
	}
	for sname, s := range stored {
		for name, secret := range secrets {
			if bytes.Contains(s, secret) {
				t.Errorf("%s contains the %s", sname, name)
			}
		}
	}
}

func TestKeyringIsSafeForConcurrentUse(t *testing.T) {
	_, _, k := newTestKeyring(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			plaintext := bytes.Repeat([]byte{byte(i)}, 100+i)
			for range 50 {
				v, err := k.Seal(k.DefaultKeyID(), testName, testARN, testVersionID, kindBinary, plaintext)
				if err != nil {
					errs <- err
					return
				}
				got, err := k.Unseal(v, testARN, testVersionID)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, plaintext) {
					errs <- errors.New("round trip changed the value")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkSealUnseal1KiB(b *testing.B) {
	_, _, k := newTestKeyring(b)
	plaintext := randomBytes(b, 1<<10)
	keyID := k.DefaultKeyID()
	b.SetBytes(int64(len(plaintext)))
	b.ReportAllocs()
	for b.Loop() {
		v, err := k.Seal(keyID, testName, testARN, testVersionID, kindBinary, plaintext)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.Unseal(v, testARN, testVersionID); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDeriveKeyIsStablePerKeyringAndPurpose(t *testing.T) {
	root, rec, k := newTestKeyring(t)
	again, err := Open(root, rec) // another node opening the same keyring
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	a1, err1 := k.DeriveKey("audit-params")
	a2, err2 := again.DeriveKey("audit-params")
	other, err3 := k.DeriveKey("something-else")
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if len(a1) != 32 || !bytes.Equal(a1, a2) {
		t.Fatalf("the same keyring derived different audit keys (%d bytes)", len(a1))
	}
	if bytes.Equal(a1, other) {
		t.Fatal("two purposes derived the same key")
	}
	_, _, k2 := newTestKeyring(t)
	if b, _ := k2.DeriveKey("audit-params"); bytes.Equal(a1, b) {
		t.Fatal("two keyrings derived the same key")
	}
}
