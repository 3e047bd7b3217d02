package replication

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cofferhq/coffer/storage"
)

func fresh(id string, expect int) Member {
	return Member{Status: MemberAlive, Meta: MemberMeta{NodeID: id, Region: "r1", ClusterAddr: "127.0.0.1:1" + id[1:], BootstrapExpect: expect}}
}

func voters(servers []raft.Server) string {
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
		if s.Suffrage != raft.Voter || s.Address == "" {
			ids[i] += "(not a voter with an address)"
		}
	}
	return strings.Join(ids, ",")
}

func TestPlanFormation(t *testing.T) {
	n := func(ms ...Member) []Member { return ms }
	withState := func(m Member) Member { m.Meta.HasState = true; return m }
	withID := func(m Member) Member { m.Meta.ClusterID = "abc"; return m }
	status := func(m Member, s MemberStatus) Member { m.Status = s; return m }
	otherRegion := func(m Member) Member { m.Meta.Region = "r2"; return m }

	for _, tc := range []struct {
		name      string
		self      string
		pool      []Member
		bootstrap string // voters self bootstraps, "" for none
		formed    bool
		conflict  bool
		seen      int
		waiting   string
	}{
		{"alone", "n1", n(fresh("n1", 3)), "", false, false, 1, "seen 1 of 3"},
		{"two of three", "n1", n(fresh("n1", 3), fresh("n2", 3)), "", false, false, 2, "seen 2 of 3"},
		{"all three: the lowest id bootstraps", "n1", n(fresh("n3", 3), fresh("n1", 3), fresh("n2", 3)), "n1,n2,n3", false, false, 3, ""},
		{"all three: another waits", "n2", n(fresh("n3", 3), fresh("n1", 3), fresh("n2", 3)), "", false, false, 3, "n1 (the lowest node id) bootstraps"},
		{"four for three: the fourth is not chosen", "n4", n(fresh("n1", 3), fresh("n2", 3), fresh("n3", 3), fresh("n4", 3)), "", false, false, 4, "not among the first 3"},
		{"four for three: the lowest takes the first three", "n1", n(fresh("n1", 3), fresh("n2", 3), fresh("n3", 3), fresh("n4", 3)), "n1,n2,n3", false, false, 4, ""},
		{"expect mismatch: nobody bootstraps", "n1", n(fresh("n1", 3), fresh("n2", 3), fresh("n3", 3), fresh("n4", 5)), "", false, true, 3, "n4 expects 5"},
		{"a member with state: the region exists", "n1", n(fresh("n1", 3), fresh("n2", 3), withState(fresh("n3", 3))), "", true, false, 0, "already has Raft state"},
		{"a member with a cluster id: the region exists", "n1", n(fresh("n1", 3), fresh("n2", 3), withID(fresh("n3", 0))), "", true, false, 0, "cluster id \"abc\""},
		{"dead members do not count", "n1", n(fresh("n1", 3), fresh("n2", 3), status(fresh("n3", 3), MemberDead)), "", false, false, 2, "seen 2 of 3"},
		{"a dead member with state does not stop formation", "n1", n(fresh("n1", 2), fresh("n2", 2), status(withState(fresh("n3", 3)), MemberLeft)), "n1,n2", false, false, 2, ""},
		{"other regions do not count", "n1", n(fresh("n1", 3), fresh("n2", 3), otherRegion(fresh("n0", 3)), otherRegion(withState(fresh("n5", 3)))), "", false, false, 2, "seen 2 of 3"},
		{"joiners (expect 0) do not count", "n1", n(fresh("n1", 3), fresh("n2", 3), fresh("n0", 0)), "", false, false, 2, "seen 2 of 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var self MemberMeta
			for _, m := range tc.pool {
				if m.Meta.NodeID == tc.self {
					self = m.Meta
				}
			}
			p := planFormation(self, tc.pool)
			if got := voters(p.Bootstrap); got != tc.bootstrap {
				t.Errorf("bootstraps %q, want %q", got, tc.bootstrap)
			}
			if p.Formed != tc.formed || p.Conflict != tc.conflict || (!tc.formed && p.Seen != tc.seen) {
				t.Errorf("plan %+v, want formed %v, conflict %v, seen %d", p, tc.formed, tc.conflict, tc.seen)
			}
			if !strings.Contains(p.Waiting, tc.waiting) {
				t.Errorf("waiting %q, want it to say %q", p.Waiting, tc.waiting)
			}
		})
	}
}

// Whatever order the servers see each other in, exactly one bootstraps,
// and always the same configuration.
func TestPlanFormationChoosesOne(t *testing.T) {
	pool := []Member{fresh("n7", 3), fresh("n2", 3), fresh("n5", 3)}
	for rot := range pool {
		view := append(slices.Clone(pool[rot:]), pool[:rot]...)
		var bootstrappers []string
		for _, self := range view {
			if p := planFormation(self.Meta, view); p.Bootstrap != nil {
				bootstrappers = append(bootstrappers, self.Meta.NodeID+":"+voters(p.Bootstrap))
			}
		}
		if len(bootstrappers) != 1 || bootstrappers[0] != "n2:n2,n5,n7" {
			t.Errorf("view %v: bootstrappers %v, want only n2 with n2,n5,n7", view, bootstrappers)
		}
	}
}

// Three nodes started with BootstrapExpect 3, the bootstrapper last, form
// one region: one configuration of three voters and one cluster id.
func TestFormationOfThreeNodes(t *testing.T) {
	pki := newTestPKI(t)
	key := newGossipKey(t)
	ids := []string{"n1", "n2", "n3"}
	gossip := map[string]string{}
	for _, id := range ids {
		gossip[id] = freeGossipAddr(t)
	}
	var nodes []*Node
	for _, id := range []string{"n3", "n2", "n1"} {
		var join []string
		for _, other := range ids {
			join = append(join, gossip[other])
		}
		dir := t.TempDir()
		store, err := storage.Open(filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := Start(Config{
			NodeID: id, Region: "r1", Dir: filepath.Join(dir, "raft"), BindAddr: freeAddr(t), TLS: pki.node(id),
			BootstrapExpect: 3,
			Gossip: MembershipConfig{BindAddr: gossip[id], Join: join, SecretKey: key, ProbeInterval: 100 * time.Millisecond,
				JoinRetryInterval: 100 * time.Millisecond},
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 150 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler),
		}, store)
		if err != nil {
			_ = store.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := n.Shutdown(); err != nil {
				t.Errorf("%s: %v", id, err)
			}
			_ = store.Close()
		})
		nodes = append(nodes, n)
	}
	pollUntil(t, 60*time.Second, "every node to hold the same cluster id", func() bool {
		id := nodes[0].ClusterID()
		for _, n := range nodes {
			if n.ClusterID() == "" || n.ClusterID() != id {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range f.Configuration().Servers {
			got = append(got, fmt.Sprintf("%s:%v", s.ID, s.Suffrage))
		}
		slices.Sort(got)
		if strings.Join(got, " ") != "n1:Voter n2:Voter n3:Voter" {
			t.Errorf("%s: configuration %v, want n1, n2 and n3 voters", n.cfg.NodeID, got)
		}
		pollUntil(t, 20*time.Second, n.cfg.NodeID+" to gossip its state and cluster id", func() bool {
			m := n.members.Self()
			return m.HasState && m.ClusterID == n.ClusterID()
		})
	}
}
