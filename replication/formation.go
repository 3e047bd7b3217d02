package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Formation, as Consul and Nomad do it: every server of a new region is
// started with the same BootstrapExpect N. A server without Raft state
// gossips its region, N and that it has no state, and waits until it sees
// N alive servers of its region without state that expect N too. The one
// with the lowest node id among the first N (by id) then bootstraps a
// configuration of all N as voters; the others bootstrap nothing and are
// contacted by the leader that configuration elects. A server that sees a
// member of its region with state (or a cluster id) never bootstraps: the
// region exists, and its leader's autopilot adds the new server.

// formationInterval is how often a server waiting to form a region looks
// at the gossip pool again.
const formationInterval = 200 * time.Millisecond

// formationPlan is what a server without state should do, given what it
// sees of the pool.
type formationPlan struct {
	// Bootstrap lists the voters to bootstrap; nil while this server does
	// not bootstrap.
	Bootstrap []raft.Server
	// Formed: a member of the region has state; never bootstrap.
	Formed bool
	// Seen is how many fresh servers of the region expecting the same N are
	// alive, this one included.
	Seen int
	// Conflict: a fresh member expects another N; nobody bootstraps until
	// the operator makes them agree.
	Conflict bool
	// Waiting says what the server waits for (for its log).
	Waiting string
}

// planFormation decides, for the server self (which has no state and
// expects self.BootstrapExpect ≥ 2), from the members of the pool. Members
// of other regions, dead or departed ones, and servers that form nothing
// (expect 0: they join an existing region) do not count.
func planFormation(self MemberMeta, members []Member) formationPlan {
	expect := self.BootstrapExpect
	fresh := []MemberMeta{self}
	var conflicts []string
	for _, m := range members {
		meta := m.Meta
		if m.Status != MemberAlive || meta.Region != self.Region || meta.NodeID == self.NodeID {
			continue
		}
		switch {
		case meta.HasState || meta.ClusterID != "":
			return formationPlan{Formed: true, Waiting: fmt.Sprintf(
				"member %s of region %s already has Raft state (cluster id %q): the region exists; waiting for its leader to add this node",
				meta.NodeID, self.Region, meta.ClusterID)}
		case meta.BootstrapExpect == 0:
		case meta.BootstrapExpect != expect:
			conflicts = append(conflicts, fmt.Sprintf("%s expects %d", meta.NodeID, meta.BootstrapExpect))
		default:
			fresh = append(fresh, meta)
		}
	}
	slices.SortFunc(fresh, func(a, b MemberMeta) int { return strings.Compare(a.NodeID, b.NodeID) })
	p := formationPlan{Seen: len(fresh)}
	switch {
	case len(conflicts) > 0:
		p.Conflict = true
		p.Waiting = fmt.Sprintf("servers of region %s disagree on bootstrap_expect: this node expects %d, %s; no server bootstraps until every one expects the same",
			self.Region, expect, strings.Join(conflicts, ", "))
	case len(fresh) < expect:
		p.Waiting = fmt.Sprintf("seen %d of %d servers of region %s to form it with", len(fresh), expect, self.Region)
	case fresh[0].NodeID != self.NodeID:
		chosen := slices.ContainsFunc(fresh[:expect], func(m MemberMeta) bool { return m.NodeID == self.NodeID })
		p.Waiting = fmt.Sprintf("seen %d of %d servers; %s (the lowest node id) bootstraps the region", len(fresh), expect, fresh[0].NodeID)
		if !chosen {
			p.Waiting = fmt.Sprintf("seen %d servers for a region of %d, and this node is not among the first %d by id; waiting to be added", len(fresh), expect, expect)
		}
	default:
		for _, m := range fresh[:expect] {
			if m.ClusterAddr == "" {
				p.Waiting = fmt.Sprintf("member %s gossips no cluster address", m.NodeID)
				return p
			}
			p.Bootstrap = append(p.Bootstrap, raft.Server{ID: raft.ServerID(m.NodeID), Address: raft.ServerAddress(m.ClusterAddr), Suffrage: raft.Voter})
		}
	}
	return p
}

// formRegion runs on a server started without Raft state and with
// BootstrapExpect ≥ 2, until it has state (it bootstrapped, or a leader
// reached it), it sees that the region exists, or ctx ends. It logs what
// it waits for when that changes, not at every look.
func (n *Node) formRegion(ctx context.Context) {
	t := time.NewTicker(formationInterval)
	defer t.Stop()
	logged := ""
	for {
		if n.hasState() {
			n.log.Info("formation: this node has Raft state now; it does not bootstrap")
			return
		}
		p := planFormation(n.members.Self(), n.members.Members())
		if p.Bootstrap != nil {
			n.bootstrapFormation(p.Bootstrap)
			return
		}
		if p.Waiting != logged {
			logged = p.Waiting
			if p.Conflict {
				n.log.Warn("formation: "+p.Waiting, "bootstrap_expect", n.cfg.BootstrapExpect)
			} else {
				n.log.Info("formation: "+p.Waiting, "bootstrap_expect", n.cfg.BootstrapExpect, "seen", p.Seen)
			}
		}
		if p.Formed {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) bootstrapFormation(servers []raft.Server) {
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	switch {
	case errors.Is(err, raft.ErrCantBootstrap):
		n.log.Info("formation: this node received Raft state before it could bootstrap; it does not bootstrap")
		return
	case err != nil:
		n.log.Error("formation: bootstrap failed", "err", err, "voters", ids)
		return
	}
	n.log.Info("formation: bootstrapped a new region; the first leader gives it a cluster id", "voters", ids)
	n.refreshMeta()
}

// hasState reports whether this node has Raft state: a log entry or a
// snapshot.
func (n *Node) hasState() bool { return n.raft.LastIndex() > 0 }

// refreshMeta gossips whether this node has state and its cluster id when
// either changed.
func (n *Node) refreshMeta() {
	if n.members == nil {
		return
	}
	hasState, id := n.hasState(), n.store.ClusterID()
	learned := false
	err := n.members.ChangeMeta(func(m *MemberMeta) bool {
		if m.HasState == hasState && m.ClusterID == id {
			return false
		}
		learned = m.ClusterID != id
		m.HasState, m.ClusterID = hasState, id
		return true
	}, time.Second)
	if err != nil && !errors.Is(err, ErrMembershipShutdown) {
		n.log.Debug("gossip meta update not confirmed", "err", err)
	}
	if learned {
		n.log.Info("this node holds the region's cluster id", "cluster_id", id)
	}
}
