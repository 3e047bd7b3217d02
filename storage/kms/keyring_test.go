package kms

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

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
			k, err := Open(openWith, r, LockBestEffort)
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
			k, err := Open(root, r, LockBestEffort)
			if !errors.Is(err, ErrInvalidKeyring) || k != nil {
				t.Errorf("Open = %v, %v; want nil, ErrInvalidKeyring", k, err)
			}
		})
	}
	if _, err := Open(root, nil, LockBestEffort); !errors.Is(err, ErrInvalidKeyring) {
		t.Errorf("Open(nil record) err = %v, want ErrInvalidKeyring", err)
	}
	if _, err := Open(root[:31], rec, LockBestEffort); !errors.Is(err, ErrSealed) {
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
	before, err := Open(root, rec, LockBestEffort)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	old, err := before.Seal(keyID, testName, testARN, "v1", kindText, []byte("old"))
	if err != nil || old.KeyVersion != 1 {
		t.Fatalf("Seal under version 1 = version %d, %v", old.GetKeyVersion(), err)
	}

	rotated.PrimaryVersion = 2
	after, err := Open(root, rec, LockBestEffort)
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

func TestResolveKey(t *testing.T) {
	root, rec, _ := newTestKeyring(t)
	const appKeyID = "33333333-3333-4333-8333-333333333333"
	rec.Keys = append(rec.Keys, rotatedKey(t, root, appKeyID, "alias/app/payments", "alias/legacy"))
	k, err := Open(root, rec, LockBestEffort)
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
