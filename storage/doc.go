// Package storage is Coffer's versioned secret state machine: the secrets,
// their versions and staging labels, tags, resource policies and the keyring,
// kept in a bbolt file and changed only by Apply(index, Command).
//
// Apply is deterministic: every id, ARN suffix, time and ciphertext it records
// comes from the command, chosen by the proposer. It never calls time.Now,
// rand or the network, and it never sees a plaintext secret value or data
// key — values arrive sealed, and idempotent retries are answered by
// comparing keyed fingerprints. Domain failures are typed results; an
// undecodable command or a storage I/O failure panics, because a replica must
// never silently diverge from its peers.
package storage
