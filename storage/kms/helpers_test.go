package kms

import (
	"crypto/rand"
	"testing"
	"time"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
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
	k, err := Open(root, rec, LockBestEffort)
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
