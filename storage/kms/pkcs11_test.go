//go:build pkcs11

package kms

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/test/testkit/softhsm"
)

// TestPKCS11Seal wraps a root key under a key it makes in a real SoftHSM2
// token, and gets it back through a new seal (as a restart would); the
// wrong PIN, another token, another key label and altered bytes are all
// refused with ErrSealed, and no error quotes the PIN.
func TestPKCS11Seal(t *testing.T) {
	tok := softhsm.New(t, "coffer-test", "4711-pin")
	cfg := PKCS11Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, KeyLabel: "coffer-root"}
	root := make([]byte, rootKeySize)
	rand.Read(root)

	if _, err := WrapRootKeyPKCS11(cfg, root, false); !errors.Is(err, ErrSealed) {
		t.Fatalf("wrap without the key and without create: %v, want ErrSealed", err)
	}
	wrapped, err := WrapRootKeyPKCS11(cfg, root, true)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, root) {
		t.Fatal("the wrapped root key holds the root key")
	}
	got, err := PKCS11Seal{Config: cfg, Wrapped: wrapped}.RootKey()
	if err != nil || !bytes.Equal(got, root) {
		t.Fatalf("RootKey: %v (equal %v)", err, bytes.Equal(got, root))
	}
	// A second wrap reuses the key the first made: both unwrap.
	again, err := WrapRootKeyPKCS11(cfg, root, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := (PKCS11Seal{Config: cfg, Wrapped: again}).RootKey(); err != nil || !bytes.Equal(got, root) {
		t.Fatalf("RootKey of a second wrap: %v", err)
	}

	altered := bytes.Clone(wrapped)
	altered[20] ^= 1
	for name, s := range map[string]PKCS11Seal{
		"wrong pin":   {Config: PKCS11Config{Module: cfg.Module, TokenLabel: cfg.TokenLabel, PIN: "0000-wrong", KeyLabel: cfg.KeyLabel}, Wrapped: wrapped},
		"wrong token": {Config: PKCS11Config{Module: cfg.Module, TokenLabel: "no-such-token", PIN: cfg.PIN, KeyLabel: cfg.KeyLabel}, Wrapped: wrapped},
		"wrong key":   {Config: PKCS11Config{Module: cfg.Module, TokenLabel: cfg.TokenLabel, PIN: cfg.PIN, KeyLabel: "other"}, Wrapped: wrapped},
		"altered":     {Config: cfg, Wrapped: altered},
		"truncated":   {Config: cfg, Wrapped: wrapped[:30]},
	} {
		got, err := s.RootKey()
		if !errors.Is(err, ErrSealed) || got != nil {
			t.Errorf("%s: %v, want ErrSealed and no key", name, err)
			continue
		}
		if strings.Contains(err.Error(), "0000-wrong") || strings.Contains(err.Error(), tok.PIN) {
			t.Errorf("%s: the error quotes the PIN: %v", name, err)
		}
	}
	// A key made for another purpose in the same token does not decrypt it.
	otherCfg := cfg
	otherCfg.KeyLabel = "other"
	if _, err := WrapRootKeyPKCS11(otherCfg, root, true); err != nil {
		t.Fatal(err)
	}
	if _, err := (PKCS11Seal{Config: otherCfg, Wrapped: wrapped}).RootKey(); !errors.Is(err, ErrSealed) {
		t.Errorf("another key of the token: %v, want ErrSealed", err)
	}
}

// BenchmarkPKCS11RootKey is what a start with the pkcs11 seal spends in
// the token: load the module, log in, find the key, one CKM_AES_GCM
// decryption, close.
func BenchmarkPKCS11RootKey(b *testing.B) {
	tok := softhsm.New(b, "coffer-bench", "9999-bench-pin")
	cfg := PKCS11Config{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN, KeyLabel: "coffer-root"}
	root := make([]byte, rootKeySize)
	rand.Read(root)
	wrapped, err := WrapRootKeyPKCS11(cfg, root, true)
	if err != nil {
		b.Fatal(err)
	}
	s := PKCS11Seal{Config: cfg, Wrapped: wrapped}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.RootKey(); err != nil {
			b.Fatal(err)
		}
	}
}
