// Package server is Coffer's API layer: it validates requests, chooses
// everything nondeterministic (version ids, ARN suffixes, times), seals
// values with the keyring, builds storage commands and proposes them through
// the region's replicator, and serves reads from local state. It maps domain
// failures to AWS error types and gRPC status codes, in one place
// (errors.go).
//
// It must never return, log or audit a plaintext secret value or data key
// except in the response to the caller who read it, never reach into Raft
// types (it sees a Replicator), and never let a request crash the node.
package server
