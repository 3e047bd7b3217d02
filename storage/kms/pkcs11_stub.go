//go:build !pkcs11

package kms

// PKCS11Available reports whether this binary has the PKCS#11 seal.
const PKCS11Available = false

// WrapRootKeyPKCS11 fails with ErrPKCS11NotBuilt: this binary was built
// without the pkcs11 tag.
func WrapRootKeyPKCS11(PKCS11Config, []byte, bool) ([]byte, error) {
	return nil, ErrPKCS11NotBuilt
}

// RootKey fails with ErrPKCS11NotBuilt: this binary was built without the
// pkcs11 tag.
func (PKCS11Seal) RootKey() ([]byte, error) { return nil, ErrPKCS11NotBuilt }
