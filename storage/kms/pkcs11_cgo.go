//go:build pkcs11

package kms

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/ThalesGroup/crypto11"
)

// PKCS11Available reports whether this binary has the PKCS#11 seal.
const PKCS11Available = true

// open logs in to the token. Errors name the module and token, never the
// PIN; the library's own message is kept (a CKR_ code such as
// CKR_PIN_INCORRECT is what an operator needs).
func (c PKCS11Config) open() (*crypto11.Context, error) {
	if c.Module == "" || c.TokenLabel == "" || c.KeyLabel == "" {
		return nil, fmt.Errorf("%w: the pkcs11 seal needs a module, a token label and a key label", ErrSealed)
	}
	ctx, err := crypto11.Configure(&crypto11.Config{Path: c.Module, TokenLabel: c.TokenLabel, Pin: c.PIN,
		GCMIVLength: pkcs11NonceSize, MaxSessions: 2})
	if err != nil {
		return nil, fmt.Errorf("%w: pkcs11 token %q of %s: %w", ErrSealed, c.TokenLabel, c.Module, scrub(err, c.PIN))
	}
	return ctx, nil
}

// scrub drops err's text if it could quote the PIN (no library does, but
// the PIN must never reach a log through an error).
func scrub(err error, pin string) error {
	if pin != "" && strings.Contains(err.Error(), pin) {
		return errors.New("login failed")
	}
	return err
}

// WrapRootKeyPKCS11 encrypts root under the token's key labelled
// c.KeyLabel, making that key (AES-256, sensitive, never extractable) when
// the token has none and create is set. The result is what PKCS11Seal
// keeps in Wrapped.
func WrapRootKeyPKCS11(c PKCS11Config, root []byte, create bool) (wrapped []byte, err error) {
	if len(root) != rootKeySize {
		return nil, fmt.Errorf("%w: a root key is %d bytes", ErrEncryption, rootKeySize)
	}
	ctx, err := c.open()
	if err != nil {
		return nil, err
	}
	defer ctx.Close()
	key, err := ctx.FindKey(nil, []byte(c.KeyLabel))
	if err != nil || key == nil {
		if !create {
			return nil, fmt.Errorf("%w: no key labelled %q in pkcs11 token %q", ErrSealed, c.KeyLabel, c.TokenLabel)
		}
		id := make([]byte, 16)
		rand.Read(id)
		if key, err = ctx.GenerateSecretKeyWithLabel(id, []byte(c.KeyLabel), 256, crypto11.CipherAES); err != nil {
			return nil, fmt.Errorf("%w: making key %q in pkcs11 token %q: %w", ErrSealed, c.KeyLabel, c.TokenLabel, err)
		}
	}
	aead, err := key.NewGCM()
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrSealed, c.KeyLabel, err)
	}
	nonce := make([]byte, pkcs11NonceSize)
	rand.Read(nonce)
	// crypto11's Seal panics when the token fails; turn that into an error.
	defer func() {
		if r := recover(); r != nil {
			wrapped, err = nil, fmt.Errorf("%w: pkcs11 token %q could not encrypt with key %q: %v", ErrEncryption, c.TokenLabel, c.KeyLabel, r)
		}
	}()
	return aead.Seal(nonce, nonce, root, []byte(pkcs11WrapDomain)), nil
}

// RootKey has the token decrypt the wrapped root key.
func (s PKCS11Seal) RootKey() ([]byte, error) {
	if len(s.Wrapped) != pkcs11NonceSize+rootKeySize+16 {
		return nil, fmt.Errorf("%w: the wrapped root key is malformed", ErrSealed)
	}
	ctx, err := s.Config.open()
	if err != nil {
		return nil, err
	}
	defer ctx.Close()
	key, err := ctx.FindKey(nil, []byte(s.Config.KeyLabel))
	if err != nil || key == nil {
		return nil, fmt.Errorf("%w: no key labelled %q in pkcs11 token %q", ErrSealed, s.Config.KeyLabel, s.Config.TokenLabel)
	}
	aead, err := key.NewGCM()
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrSealed, s.Config.KeyLabel, err)
	}
	root, err := aead.Open(nil, s.Wrapped[:pkcs11NonceSize], s.Wrapped[pkcs11NonceSize:], []byte(pkcs11WrapDomain))
	if err != nil {
		return nil, fmt.Errorf("%w: key %q of pkcs11 token %q does not decrypt this seal's root key (another key, or altered)", ErrSealed, s.Config.KeyLabel, s.Config.TokenLabel)
	}
	if len(root) != rootKeySize {
		clear(root)
		return nil, fmt.Errorf("%w: the wrapped root key is malformed", ErrSealed)
	}
	return root, nil
}
