// Package replication runs the Raft node of a region: hashicorp/raft with a
// raft-boltdb/v2 log, file snapshots, and the FSM adapter that hands
// committed entries to the storage state machine in batches.
//
// It moves opaque, already-decided commands; it never looks inside a
// secret and never decides a domain outcome, and the only commands it
// builds are its own housekeeping (the cluster id, consistency check
// points). It forms new regions, keeps nodes of different clusters apart,
// and checks that replicas hold the same state. A command that cannot be
// decoded stops the node rather than letting it diverge.
package replication
