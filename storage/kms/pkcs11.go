package kms

// PKCS11Config names the HSM key that wraps a PKCS#11 seal's root key.
type PKCS11Config struct {
	// Module is the path of the token's PKCS#11 library
	// (/usr/lib/softhsm/libsofthsm2.so for SoftHSM2).
	Module string
	// TokenLabel selects the token.
	TokenLabel string
	// PIN logs in as the token's user. It is a credential: never logged
	// or put in an error.
	PIN string
	// KeyLabel is the label of the AES-256 key in the token that wraps
	// the root key.
	KeyLabel string
}

// pkcs11WrapDomain is the associated data of the root key wrapped under
// the HSM key, so the HSM key's ciphertext of anything else is not taken
// for a root key.
const pkcs11WrapDomain = "coffer/kms/v1/pkcs11-root-key"

// pkcs11NonceSize is the GCM nonce of the wrapped root key: 96 bits,
// supplied by Coffer (random), which every token that does CKM_AES_GCM
// accepts.
const pkcs11NonceSize = 12

var _ Seal = PKCS11Seal{}

// PKCS11Seal releases the root key by having an HSM decrypt it: the root
// key is stored only wrapped (AES-256-GCM, CKM_AES_GCM inside the token)
// under a key that never leaves the token (CKA_SENSITIVE, not extractable).
// Wrapped is what WrapRootKeyPKCS11 returned. Its RootKey is in
// pkcs11_cgo.go (build tag pkcs11) or fails with ErrPKCS11NotBuilt.
type PKCS11Seal struct {
	Config  PKCS11Config
	Wrapped []byte
}
