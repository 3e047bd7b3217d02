//go:build !pkcs11

package kms

import (
	"errors"
	"testing"
)

// TestPKCS11NotBuilt: without the pkcs11 tag the seal fails with
// ErrPKCS11NotBuilt, whose text names the tag.
func TestPKCS11NotBuilt(t *testing.T) {
	if _, err := (PKCS11Seal{}).RootKey(); !errors.Is(err, ErrPKCS11NotBuilt) {
		t.Fatalf("RootKey: %v", err)
	}
	if _, err := WrapRootKeyPKCS11(PKCS11Config{}, make([]byte, 32), true); !errors.Is(err, ErrPKCS11NotBuilt) {
		t.Fatalf("WrapRootKeyPKCS11: %v", err)
	}
}
