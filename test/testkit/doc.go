// Package testkit holds the small helpers Coffer's test suites share: free
// loopback addresses, a replicator that commits straight to a store (the
// log without Raft) and an auditor that keeps what it is given. Its
// subpackage clustertest starts in-process nodes and regions.
//
// It depends only on storage/ and the protobuf packages, never on server/
// or anything above it, so that server's own in-package tests can import
// it without an import cycle. It is for tests and test tools only:
// nothing cofferd runs may import it.
package testkit
