package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// apNode is a Raft server on a cluster port plus its gossip pool member.
type apNode struct {
	*raftPeer
	pool *Membership
}

// apCluster is an in-process region for autopilot tests. status answers
// NodeStatus the way the cluster gRPC would, from the node's own Raft.
type apCluster struct {
	t     *testing.T
	nodes []*apNode

	mu     sync.Mutex
	byAddr map[string]*raft.Raft
}

// newAPCluster starts size nodes. n1 is bootstrapped with every node as a
// voter when allVoters is set, else alone; the others start empty.
func newAPCluster(t *testing.T, size int, allVoters bool) *apCluster {
	t.Helper()
	pki := newTestPKI(t)
	key := newGossipKey(t)
	c := &apCluster{t: t, byAddr: make(map[string]*raft.Raft)}
	for i := 1; i <= size; i++ {
		c.nodes = append(c.nodes, &apNode{raftPeer: newRaftPeer(t, pki, fmt.Sprintf("n%d", i))})
	}
	boot := raft.Configuration{Servers: []raft.Server{c.nodes[0].server(raft.Voter)}}
	if allVoters {
		for _, n := range c.nodes[1:] {
			boot.Servers = append(boot.Servers, n.server(raft.Voter))
		}
	}
	c.nodes[0].start(boot)
	for _, n := range c.nodes[1:] {
		n.start(raft.Configuration{})
	}
	var seed string
	for _, n := range c.nodes {
		cfg := fastMembershipConfig(key, n.id, "127.0.0.1:0")
		cfg.Meta.ClusterAddr = n.mux.Addr().String()
		if seed != "" {
			cfg.Join = []string{seed}
		}
		n.pool = startTestMembership(t, cfg)
		seed = c.nodes[0].pool.LocalNode().GossipAddr
		c.byAddr[cfg.Meta.ClusterAddr] = n.raft
	}
	pollUntil(t, 20*time.Second, "n1 to lead", func() bool { return c.nodes[0].raft.State() == raft.Leader })
	pollUntil(t, 20*time.Second, "n1 to see every member alive", func() bool {
		ms := c.nodes[0].pool.Members()
		return len(ms) == size && !slices.ContainsFunc(ms, func(m Member) bool { return m.Status != MemberAlive })
	})
	return c
}

func (c *apCluster) status(_ context.Context, clusterAddr string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.byAddr[clusterAddr]
	if !ok {
		return 0, errors.New("unreachable")
	}
	return r.AppliedIndex(), nil
}

// kill stops a node without a leave: Raft, cluster port and gossip.
func (c *apCluster) kill(n *apNode) {
	c.mu.Lock()
	delete(c.byAddr, n.mux.Addr().String())
	c.mu.Unlock()
	if err := n.pool.Shutdown(); err != nil {
		c.t.Error(err)
	}
	n.stop()
}

func (c *apCluster) autopilot(n *apNode, cfg AutopilotConfig) *Autopilot {
	return NewAutopilot(n.raft, n.pool, c.status, cfg, slog.New(slog.DiscardHandler))
}

// suffrages renders a Raft configuration as id → suffrage.
func suffrages(servers []raft.Server) map[string]raft.ServerSuffrage {
	out := make(map[string]raft.ServerSuffrage, len(servers))
	for _, s := range servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

func TestAutopilotAddsPromotesAndRemoves(t *testing.T) {
	c := newAPCluster(t, 3, false)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	cfg := AutopilotConfig{DeadServerTimeout: time.Second, MinQuorum: 2, StableFor: 300 * time.Millisecond}
	ctx := context.Background()

	// A follower's autopilot does nothing and forgets what it knew.
	follower := c.autopilot(n2, cfg)
	follower.healthySince["n3"] = time.Now()
	if err := follower.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if len(follower.healthySince) != 0 {
		t.Error("a follower's autopilot kept its observations")
	}
	if got := suffrages(n1.configuration()); len(got) != 1 {
		t.Fatalf("configuration after a follower's pass: %v, want n1 alone", got)
	}

	ap := c.autopilot(n1, cfg)
	added := map[string]time.Time{}
	promoted := map[string]time.Time{}
	pollUntil(t, 30*time.Second, "n2 and n3 to be promoted", func() bool {
		if err := ap.Reconcile(ctx); err != nil {
			t.Logf("reconcile: %v", err)
		}
		now := time.Now()
		for id, s := range suffrages(n1.configuration()) {
			if id == "n1" {
				continue
			}
			if _, seen := added[id]; !seen {
				added[id] = now
				if s != raft.Nonvoter {
					t.Fatalf("%s joined the configuration as %v, want a non-voter first", id, s)
				}
			}
			if _, done := promoted[id]; !done && s == raft.Voter {
				promoted[id] = now
			}
		}
		return len(promoted) == 2
	})
	for id, at := range promoted {
		if wait := at.Sub(added[id]); wait < cfg.StableFor {
			t.Errorf("%s promoted %s after joining, before StableFor %s", id, wait, cfg.StableFor)
		}
	}

	// The promoted voters replicate.
	for i := range 10 {
		if err := n1.raft.Apply([]byte{byte(i)}, 10*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.nodes {
		pollUntil(t, 20*time.Second, n.id+" to apply 10 entries", func() bool { return n.fsm.applied.Load() == 10 })
	}

	// n3 crashes. With MinQuorum 2 it may go, but only after the dead
	// server timeout.
	c.kill(n3)
	var removedAt time.Time
	pollUntil(t, 30*time.Second, "n3 to be removed", func() bool {
		if err := ap.Reconcile(ctx); err != nil {
			t.Logf("reconcile: %v", err)
		}
		if _, in := suffrages(n1.configuration())["n3"]; in {
			return false
		}
		removedAt = time.Now()
		return true
	})
	mem, ok := n1.pool.Lookup("n3")
	if !ok || mem.Status != MemberDead {
		t.Fatalf("n1 sees n3 as %+v, want dead", mem)
	}
	if gone := removedAt.Sub(mem.Since); gone < cfg.DeadServerTimeout {
		t.Errorf("n3 removed %s after it was seen dead, before the %s timeout", gone, cfg.DeadServerTimeout)
	}
	if got := suffrages(n1.configuration()); len(got) != 2 || got["n1"] != raft.Voter || got["n2"] != raft.Voter {
		t.Errorf("configuration after removal: %v, want n1 and n2 voters", got)
	}
}

func TestAutopilotKeepsDeadVoterAtMinQuorum(t *testing.T) {
	c := newAPCluster(t, 3, true)
	n1, n3 := c.nodes[0], c.nodes[2]
	cfg := AutopilotConfig{DeadServerTimeout: 300 * time.Millisecond, StableFor: 100 * time.Millisecond} // MinQuorum defaults to 3
	ap := c.autopilot(n1, cfg)
	ctx := context.Background()

	c.kill(n3)
	pollUntil(t, 20*time.Second, "n1 to see n3 dead", func() bool {
		m, _ := n1.pool.Lookup("n3")
		return m.Status == MemberDead
	})
	// Run passes until n3 has been dead for well past the timeout.
	m, _ := n1.pool.Lookup("n3")
	passesAfterTimeout := 0
	pollUntil(t, 20*time.Second, "ten passes after the dead server timeout", func() bool {
		if err := ap.Reconcile(ctx); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		if time.Since(m.Since) > cfg.DeadServerTimeout {
			passesAfterTimeout++
		}
		return passesAfterTimeout >= 10
	})
	if n1.raft.State() != raft.Leader {
		t.Fatal("n1 lost leadership; the passes proved nothing")
	}
	if got := suffrages(n1.configuration()); len(got) != 3 || got["n3"] != raft.Voter {
		t.Errorf("configuration %v: the dead voter was removed below the minimum quorum", got)
	}
}

func TestPlanRemovals(t *testing.T) {
	const timeout = time.Minute
	alive := func(id string) serverHealth { return serverHealth{ID: raft.ServerID(id), Voter: true, Healthy: true} }
	leader := func(id string) serverHealth { s := alive(id); s.Leader = true; return s }
	dead := func(id string, gone time.Duration) serverHealth {
		return serverHealth{ID: raft.ServerID(id), Voter: true, GoneFor: gone, Why: "member dead"}
	}
	nonvoter := func(s serverHealth) serverHealth { s.Voter = false; return s }
	long := 2 * timeout

	for _, tc := range []struct {
		name      string
		view      []serverHealth
		minQuorum int
		remove    []raft.ServerID
		held      []raft.ServerID
	}{
		{"dead non-voter goes whatever the quorum", []serverHealth{leader("a"), nonvoter(dead("b", long))}, 3, []raft.ServerID{"b"}, nil},
		{"dead non-voter within the timeout stays", []serverHealth{leader("a"), nonvoter(dead("b", timeout/2))}, 3, nil, nil},
		{"dead voter within the timeout stays", []serverHealth{leader("a"), alive("b"), alive("c"), dead("d", timeout)}, 3, nil, nil},
		{"3 voters, min quorum 3: kept", []serverHealth{leader("a"), alive("b"), dead("c", long)}, 3, nil, []raft.ServerID{"c"}},
		{"3 voters, min quorum 2: removed", []serverHealth{leader("a"), alive("b"), dead("c", long)}, 2, []raft.ServerID{"c"}, nil},
		{"5 voters, 2 dead, min quorum 3: both go", []serverHealth{leader("a"), alive("b"), alive("c"), dead("d", long), dead("e", long)}, 3, []raft.ServerID{"d", "e"}, nil},
		{"4 voters, 2 dead, min quorum 3: one goes", []serverHealth{leader("a"), alive("b"), dead("c", long), dead("d", long)}, 3, []raft.ServerID{"c"}, []raft.ServerID{"d"}},
		{"3 voters, 2 dead, min quorum 1: no quorum of healthy voters", []serverHealth{leader("a"), dead("b", long), dead("c", long)}, 1, nil, []raft.ServerID{"b", "c"}},
		{"the leader is never removed", []serverHealth{{ID: "a", Voter: true, Leader: true, GoneFor: long}, alive("b"), alive("c"), alive("d")}, 1, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remove, held := planRemovals(tc.view, timeout, tc.minQuorum)
			ids := func(rs []removal) []raft.ServerID {
				var out []raft.ServerID
				for _, r := range rs {
					out = append(out, r.ID)
				}
				return out
			}
			if got := ids(remove); !slices.Equal(got, tc.remove) {
				t.Errorf("remove %v, want %v", got, tc.remove)
			}
			if got := ids(held); !slices.Equal(got, tc.held) {
				t.Errorf("held %v, want %v", got, tc.held)
			}
		})
	}
}
