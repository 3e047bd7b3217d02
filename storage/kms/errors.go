package kms

import "errors"

// Errors returned by this package, always wrapped with %w and context that
// never includes key material or plaintext. server/ maps them to gRPC codes
// and AWS error types.
var (
	// ErrSealed means the root key is unavailable: the seal could not release
	// it, or the key file is missing, unreadable, malformed or too permissive.
	ErrSealed = errors.New("kms: root key unavailable (sealed)")

	// ErrPKCS11NotBuilt means the PKCS#11 seal was asked of a build without
	// it: the seal needs cgo, so only a binary built with the pkcs11 build
	// tag has it (see doc.go).
	ErrPKCS11NotBuilt = errors.New("kms: the pkcs11 seal is not compiled into this binary: build cofferd with cgo and -tags pkcs11 (make build-pkcs11); the static release binary and the scratch image do not have it")

	// ErrKeyNotFound means a KMS key id, alias or ARN names no key in the
	// keyring.
	ErrKeyNotFound = errors.New("kms: key not found")

	// ErrDecryption means authentication failed while unsealing: the wrong
	// root or KMS key, associated data (ARN, version id) that does not match,
	// or tampered bytes. It deliberately does not say which.
	ErrDecryption = errors.New("kms: decryption failed")

	// ErrEncryption means a value could not be sealed.
	ErrEncryption = errors.New("kms: encryption failed")

	// ErrInvalidKeyring means a stored keyring record is malformed: missing
	// or duplicate keys, aliases or versions, or material of the wrong size.
	ErrInvalidKeyring = errors.New("kms: invalid keyring")
)
