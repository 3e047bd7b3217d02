// Package kms owns Coffer's envelope encryption: the Seal that releases a
// region's root key, the keyring of KMS keys that is sealed under that root
// key and stored in the state machine, the sealing of each secret version
// under its own AES-256-GCM data key (wrapped by a KMS key and bound to the
// secret's ARN and version id), and the keyed fingerprint that lets the state
// machine compare values without plaintext. It must never log, put in an error
// or place in a stored record any root key, key material, data key or
// plaintext value. Seal and NewKeyring draw randomness, so they run before a
// command is proposed and never inside Apply; Unseal and Fingerprint are
// deterministic.
//
// Seals: FileSeal (a key file), Shamir shares (Split, CombineRootKey, with
// RootKeyCheck to recognise the key) and PKCS11Seal (the root key wrapped
// by an AES key that never leaves an HSM, CKM_AES_GCM in the token). The
// PKCS#11 seal needs cgo (crypto11 and the token's C library), so it is
// compiled in only with the pkcs11 build tag (pkcs11_cgo.go); the default
// build — the static, cgo-free release binary and the FROM-scratch image —
// has pkcs11_stub.go instead, whose functions fail with ErrPKCS11NotBuilt,
// naming the tag. PKCS11Available says which build this is.
package kms
