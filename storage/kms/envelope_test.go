package kms

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

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
	again, err := Open(root, rec, LockBestEffort) // another node opening the same keyring
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
