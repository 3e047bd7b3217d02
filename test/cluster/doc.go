// Package cluster holds Coffer's in-process cluster tests: several real
// nodes (node/, the same assembly cofferd runs) in one test process on
// loopback TCP, with mutual TLS, gossip and autopilot, started by the
// test/testkit/clustertest harness and wired through its fault-injecting
// network that can cut the links between them. The tests drive the nodes
// through the gRPC API as a client would and check what clients see across
// leader failover, partitions, snapshot catch-up, admin operations and
// cross-region replication, including a linearizability check of the
// history with porcupine.
//
// The package owns only tests. It must never change how a node behaves
// except through the node's own options (and the Dial hook that exists for
// exactly this), never sleep where it can wait for a condition, and never
// assert on how long something took: durations are logged as measurements.
package cluster
