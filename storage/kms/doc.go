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
package kms
