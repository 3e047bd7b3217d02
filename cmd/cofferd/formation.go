package main

import "fmt"

// validateFormation checks how a new region forms: bootstrap (a region of
// one) or bootstrap_expect (N servers form it together).
func (c Config) validateFormation() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	r := c.Raft
	switch {
	case r.BootstrapExpect < 1:
		add("raft.bootstrap_expect %d must be at least 1 (1: this node forms a region alone)", r.BootstrapExpect)
	case r.Bootstrap && r.bootstrapExpectSet && r.BootstrapExpect > 1:
		add("raft.bootstrap (a region of one node) and raft.bootstrap_expect %d exclude each other: set only bootstrap_expect, the same on every server", r.BootstrapExpect)
	case c.formsAlone() && len(c.Cluster.Join) > 0:
		add("raft.bootstrap (or bootstrap_expect 1) starts a region of this node alone and must not be combined with cluster.join: " +
			"a node that bootstraps alone while joining others forms a region of its own beside theirs; " +
			"give every server of a new region the same raft.bootstrap_expect instead, and a node joining an existing region needs neither")
	case !c.formsAlone() && c.Cluster.GossipAddr == "":
		add("raft.bootstrap_expect %d needs cluster.gossip_addr and cluster.join to find the other servers; a single node sets raft.bootstrap: true (or bootstrap_expect: 1)", r.BootstrapExpect)
	}
	if c.Cluster.ConsistencyCheckInterval < 0 {
		add("cluster.consistency_check_interval must not be negative (0 turns the automatic checks off)")
	}
	return errs
}

// formsAlone reports whether this node starts a region by itself.
func (c Config) formsAlone() bool { return c.Raft.Bootstrap || c.Raft.BootstrapExpect == 1 }

// bootstrapExpect is the number of servers the node forms a region with,
// for Raft: 0 when it forms one alone (Bootstrap).
func (c Config) bootstrapExpect() int {
	if c.formsAlone() {
		return 0
	}
	return c.Raft.BootstrapExpect
}
