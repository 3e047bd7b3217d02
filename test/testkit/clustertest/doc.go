// Package clustertest starts real Coffer nodes in the test process: the
// options of a single node, a Cluster (one region of N nodes started by
// node.StartRegion, on loopback TCP with mutual TLS, gossip and autopilot,
// its cluster links through a Network that can partition them) and a
// RegionSet (several such regions on one WAN whose replication links can
// be cut). Nodes can be stopped and restarted with their data; clients
// authenticate as the region's root principal. test/cluster's tests use
// it, and so can any later suite that needs running nodes.
//
// It changes how a node behaves only through the node's own options (and
// the Dial hooks that exist for exactly this), waits for conditions and
// never sleeps, and asserts nothing about durations.
package clustertest
