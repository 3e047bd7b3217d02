package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// How a new region forms: bootstrap_expect 3 by default, the same on every
// server; bootstrap (a region of one) never with join, nor with an explicit
// bootstrap_expect above 1.
func TestConfigFormation(t *testing.T) {
	d := defaultConfig()
	if d.Raft.Bootstrap || d.Raft.BootstrapExpect != 3 || d.Cluster.ConsistencyCheckInterval != 5*time.Minute {
		t.Fatalf("defaults: bootstrap %v, bootstrap_expect %d, consistency check every %s", d.Raft.Bootstrap, d.Raft.BootstrapExpect, d.Cluster.ConsistencyCheckInterval)
	}
	file := func(yaml string) string {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	cfg, err := load(t, []string{"--join", "10.0.0.12:7402,10.0.0.13:7402"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := cfg.raftConfig(nil)
	if rc.Bootstrap || rc.BootstrapExpect != 3 || rc.ConsistencyCheckInterval != 5*time.Minute {
		t.Fatalf("a server of a new region: raft bootstrap %v, expect %d, check %s", rc.Bootstrap, rc.BootstrapExpect, rc.ConsistencyCheckInterval)
	}
	// bootstrap: true over the default bootstrap_expect is a region of one.
	cfg, err = load(t, []string{"--bootstrap", "true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc := cfg.raftConfig(nil); !rc.Bootstrap || rc.BootstrapExpect != 0 {
		t.Fatalf("bootstrap: raft bootstrap %v, expect %d", rc.Bootstrap, rc.BootstrapExpect)
	}
	// So is bootstrap_expect 1, and a single node needs no gossip then.
	cfg, err = load(t, []string{"--bootstrap-expect", "1", "--gossip-addr", ""}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc := cfg.raftConfig(nil); !rc.Bootstrap || rc.BootstrapExpect != 0 {
		t.Fatalf("bootstrap_expect 1: raft bootstrap %v, expect %d", rc.Bootstrap, rc.BootstrapExpect)
	}

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bootstrap with join", []string{"--bootstrap", "true", "--join", "10.0.0.12:7402"}, nil, "must not be combined with cluster.join"},
		{"bootstrap with join, from the environment", nil, map[string]string{"COFFER_BOOTSTRAP": "true", "COFFER_JOIN": "10.0.0.12:7402"}, "must not be combined with cluster.join"},
		{"bootstrap_expect 1 with join", []string{"--bootstrap-expect", "1", "--join", "10.0.0.12:7402"}, nil, "must not be combined with cluster.join"},
		{"bootstrap with bootstrap_expect 3 from a file", []string{"--config", file("raft:\n  bootstrap: true\n  bootstrap_expect: 3\n")}, nil, "exclude each other"},
		{"bootstrap with bootstrap_expect 3 from a flag", []string{"--bootstrap", "true", "--bootstrap-expect", "3"}, nil, "exclude each other"},
		{"bootstrap_expect 0", []string{"--bootstrap-expect", "0"}, nil, "must be at least 1"},
		{"bootstrap_expect not a number", []string{"--bootstrap-expect", "three"}, nil, "--bootstrap-expect"},
		{"bootstrap_expect without gossip", []string{"--gossip-addr", ""}, nil, "raft.bootstrap_expect 3 needs cluster.gossip_addr"},
		{"negative check interval", []string{"--consistency-check-interval", "-1s"}, nil, "cluster.consistency_check_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q", err, tc.want)
			}
		})
	}
	// A file setting bootstrap_expect 3 without bootstrap is fine, and the
	// check interval can be turned off.
	cfg, err = load(t, []string{"--config", file("raft:\n  bootstrap_expect: 5\ncluster:\n  consistency_check_interval: 0s\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc := cfg.raftConfig(nil); rc.BootstrapExpect != 5 || rc.ConsistencyCheckInterval != 0 {
		t.Fatalf("from the file: expect %d, check %s", rc.BootstrapExpect, rc.ConsistencyCheckInterval)
	}
}

// The example config forms a region of three, and serves as a single node
// with --bootstrap-expect 1 and no seeds.
func TestExampleConfigForms(t *testing.T) {
	example := filepath.Join("..", "..", "deploy", "cofferd.example.yaml")
	cfg, err := load(t, []string{"--config", example}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc := cfg.raftConfig(nil); rc.Bootstrap || rc.BootstrapExpect != 3 || len(cfg.Cluster.Join) != 3 {
		t.Fatalf("example: bootstrap %v, expect %d, join %v", rc.Bootstrap, rc.BootstrapExpect, cfg.Cluster.Join)
	}
	cfg, err = load(t, []string{"--config", example, "--bootstrap-expect", "1", "--join="}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rc := cfg.raftConfig(nil); !rc.Bootstrap {
		t.Fatal("the example with --bootstrap-expect 1 does not bootstrap alone")
	}
	if _, err := load(t, []string{"--config", example, "--bootstrap", "true"}, nil); err == nil {
		t.Fatal("the example with --bootstrap true (beside its bootstrap_expect 3 and join) passed")
	}
}
