package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/test/wait"
)

// TestFormationFromOneConfig is issue 12's reproduction turned around:
// three `cofferd server` processes started from the same config file
// (bootstrap_expect 3, every server in the join list), differing only by
// their id, addresses and data directory, form one region, whatever order
// they start in: one server bootstraps, one root principal is created and
// written, one keyring encrypts (a secret written through one server reads
// back through every other), and cluster status shows three voters of one
// cluster id.
func TestFormationFromOneConfig(t *testing.T) {
	for _, order := range [][]string{{"n3", "n1", "n2"}, {"n2", "n3", "n1"}} {
		t.Run("start order "+strings.Join(order, ","), func(t *testing.T) {
			r := newSharedRegion(t, "n1", "n2", "n3")
			servers := map[string]*regionServer{}
			for k, id := range order {
				s := r.server(id)
				servers[id] = s
				r.start(s)
				if k < len(order)-1 {
					// The next one starts once this one waits for its peers,
					// so the order is the order they come up in.
					s.waitLog("formation: seen")
				}
			}
			for _, id := range order {
				servers[id].waitServing()
			}
			creds := checkOneRegion(t, servers)

			// The bootstrapper is the lowest id, and only it bootstrapped;
			// the first to start logged its wait once, not at every look.
			for id, s := range servers {
				if got := len(s.logLines("formation: bootstrapped a new region")); got != map[bool]int{true: 1, false: 0}[id == "n1"] {
					t.Errorf("%s logged %d bootstraps", id, got)
				}
			}
			if got := len(servers[order[0]].logLines("formation: seen 1 of 3")); got != 1 {
				t.Errorf("%s logged \"seen 1 of 3\" %d times, want once", order[0], got)
			}
			if _, stderr, code := servers[order[1]].cli(creds, "cluster", "check"); code != 0 {
				t.Errorf("cluster check: exit %d: %s", code, stderr)
			}
		})
	}
}

// TestAnotherClusterIsRefused: a fourth server that bootstrapped a region
// alone (bootstrap: true) and is then pointed at the region with join has
// another cluster id. The region's leader refuses to add it and says so,
// it refuses the region's servers likewise, and the region is unaffected.
func TestAnotherClusterIsRefused(t *testing.T) {
	r := newSharedRegion(t, "n1", "n2", "n3")
	servers := map[string]*regionServer{}
	for _, id := range []string{"n1", "n2", "n3"} {
		servers[id] = r.server(id)
		r.start(servers[id])
	}
	for _, s := range servers {
		s.waitServing()
	}
	creds := checkOneRegion(t, servers)
	regionID := clusterStatus(t, servers["n1"], creds).ClusterID

	// n4: the same files, but a config that makes a region of its own,
	// joining no one.
	n4 := r.server("n4")
	r.start(n4, "--config", r.variant("solo.yaml", func(cfg string) string {
		cfg = strings.Replace(cfg, "bootstrap_expect: 3", "bootstrap: true", 1)
		lines := strings.Split(cfg, "\n")
		return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "join:") }), "\n")
	}))
	n4.waitServing()
	creds4 := readCredentials(t, filepath.Join(n4.dataDir, "root-credentials"))
	var ownID string
	wait.Until(t, formationTimeout, func() error {
		ownID = clusterStatus(t, n4, creds4).ClusterID
		if ownID == "" {
			return errors.New("n4 has no cluster id yet")
		}
		return nil
	})
	if ownID == regionID {
		t.Fatalf("n4 bootstrapped alone and has the region's cluster id %s", ownID)
	}
	n4.stop()
	// Pointed at the region: the shared file as it is.
	r.start(n4)
	n4.waitServing()

	wait.Until(t, formationTimeout, func() error {
		for id, s := range servers {
			for _, l := range s.logLines("refusing to add a member of another cluster") {
				if l["node_id"] == "n4" && l["local_cluster_id"] == regionID && l["member_cluster_id"] == ownID && l["level"] == "ERROR" {
					return nil
				}
				t.Logf("%s: refusal %v", id, l)
			}
		}
		return errors.New("no region server has logged that it refuses n4")
	})
	n4.waitLog("refusing to add a member of another cluster")

	// The region is unaffected: three voters, none of them n4, serving
	// reads and writes through every server; n4 is still a region of one.
	for id, s := range servers {
		st := clusterStatus(t, s, creds)
		if len(st.Servers) != 3 || slices.ContainsFunc(st.Servers, func(v statusServer) bool { return v.NodeID == "n4" }) {
			t.Errorf("%s's status: %+v", id, st.Servers)
		}
	}
	if _, stderr, code := servers["n2"].cli(creds, "secrets", "create", "after/n4", "--value", "still-one-region"); code != 0 {
		t.Fatalf("create after n4 came: exit %d: %s", code, stderr)
	}
	for id, s := range servers {
		if out, stderr, code := s.cli(creds, "secrets", "get", "after/n4", "--value-only"); code != 0 || out != "still-one-region\n" {
			t.Errorf("read through %s: %q exit %d: %s", id, out, code, stderr)
		}
	}
	if st := clusterStatus(t, n4, creds4); len(st.Servers) != 1 || st.ClusterID != ownID {
		t.Errorf("n4's status: %+v", st)
	}
}

// checkOneRegion checks that servers form one region, and returns its root
// access key: exactly one server wrote a root-credentials file, that key
// works on every server, a secret written through one reads back through
// all (one keyring), and every server reports the same three voters and
// one cluster id.
func checkOneRegion(t *testing.T, servers map[string]*regionServer) accessKey {
	t.Helper()
	var written []string
	for id, s := range servers {
		if _, err := os.Stat(filepath.Join(s.dataDir, "root-credentials")); err == nil {
			written = append(written, id)
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if len(written) != 1 {
		t.Fatalf("root-credentials written by %v, want exactly one server", written)
	}
	creds := readCredentials(t, filepath.Join(servers[written[0]].dataDir, "root-credentials"))
	ids := slices.Sorted(maps.Keys(servers))
	writer := servers[ids[len(ids)-1]]
	if _, stderr, code := writer.cli(creds, "secrets", "create", "formation/db", "--value", "s3cr3t"); code != 0 {
		t.Fatalf("create through %s: exit %d: %s", writer.id, code, stderr)
	}
	var clusterID string
	for _, id := range ids {
		s := servers[id]
		if out, stderr, code := s.cli(creds, "secrets", "get", "formation/db", "--value-only"); code != 0 || out != "s3cr3t\n" {
			t.Errorf("read through %s: %q, exit %d: %s", id, out, code, stderr)
		}
		wait.Until(t, formationTimeout, func() error {
			st := clusterStatus(t, s, creds)
			var voters []string
			for _, v := range st.Servers {
				if v.Voter && v.ClusterID == st.ClusterID && v.Health == "healthy" {
					voters = append(voters, v.NodeID)
				}
			}
			if st.ClusterID == "" || strings.Join(voters, ",") != strings.Join(ids, ",") {
				return fmt.Errorf("%s's status: cluster id %q, healthy voters of it %v", id, st.ClusterID, voters)
			}
			if clusterID == "" {
				clusterID = st.ClusterID
			}
			if st.ClusterID != clusterID {
				t.Fatalf("%s reports cluster id %s, another server %s", id, st.ClusterID, clusterID)
			}
			return nil
		})
	}
	return creds
}

// statusServer and clusterStatusJSON are what the tests read of
// `coffer -o json cluster status`.
type statusServer struct {
	NodeID    string `json:"nodeId"`
	Voter     bool   `json:"voter"`
	Health    string `json:"health"`
	ClusterID string `json:"clusterId"`
}

type clusterStatusJSON struct {
	ClusterID string         `json:"clusterId"`
	Servers   []statusServer `json:"servers"`
}

func clusterStatus(t *testing.T, s *regionServer, creds accessKey) clusterStatusJSON {
	t.Helper()
	out, stderr, code := s.cli(creds, "-o", "json", "cluster", "status")
	if code != 0 {
		t.Fatalf("cluster status on %s: exit %d: %s", s.id, code, stderr)
	}
	var st clusterStatusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cluster status on %s: %v\n%s", s.id, err, out)
	}
	return st
}
