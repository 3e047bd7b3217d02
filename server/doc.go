// Package server is Coffer's API layer: it validates requests, chooses
// everything nondeterministic (version ids, ARN suffixes, times), seals
// values with the keyring, builds storage commands and proposes them through
// the region's replicator, and serves reads from local state. It maps domain
// failures to AWS error types in one place (errors.go); server/awserr gives
// each type its gRPC code and HTTP status. At the transport edge (the Gate,
// edge.go) it authorizes every request with identity and resource policies,
// evaluated by server/policy (authz.go decides, authz_target.go finds what a
// request acts on, authz_filter.go decides lists and batches secret by
// secret), and writes one audit record per request served (refusals are
// sampled: auditsample.go); it bounds what callers can make a node do —
// connections per source (connlimit.go), throttling of sources that fail to
// authenticate (sourcelimit.go), read waits (consistency.go). Service methods
// themselves never authorize, because internal callers (rotation,
// replication) call them as the system.
//
// It must never return, log or audit a plaintext secret value, data key,
// secret access key or session token except in the response to the caller
// who asked for it, never answer a request whose audit record could not be
// written, never reach into Raft
// types (it sees a Replicator), and never let a request crash the node.
package server
