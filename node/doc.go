// Package node is Coffer's composition root: it assembles one running node
// — the state database, the region's Raft node, the API service with its
// gRPC and AWS listeners, cross-region replication and the background work
// — and starts local regions of several such nodes in one process
// (StartRegion: certificates from one CA, ports, gossip joins, bootstrap,
// waiting until ready). cofferd, `cofferd dev`, the profiling command and
// the in-process cluster tests all start nodes through it, so they run the
// same code.
//
// It wires parts together and owns their lifecycle; it must never contain
// API logic (server/), state logic (storage/) or consensus logic
// (replication/), and nothing below it imports it.
package node
