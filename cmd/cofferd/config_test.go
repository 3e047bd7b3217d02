package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	base := defaultConfig()
	// A server of a multi-node region: the default bootstrap_expect needs
	// the gossip pool.
	base.NodeID, base.DataDir, base.Seal.KeyFile, base.Cluster.GossipAddr = "n1", "/tmp/d", "/tmp/k", "127.0.0.1:7402"
	return loadConfig(fs, base, args, func(k string) string { return env[k] })
}

// A file, then COFFER_* variables, then flags: each overrides the one before.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "region: eu-west-1\naccount_id: \"111111111111\"\ngrpc_addr: 127.0.0.1:9000\nraft:\n  heartbeat_timeout: 2s\n  election_timeout: 3s\ncluster:\n  join: [a:1, b:2]\n  gossip_addr: 127.0.0.1:9002\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, []string{"--config", file, "--account-id", "333333333333"},
		map[string]string{"COFFER_ACCOUNT_ID": "222222222222", "COFFER_GRPC_ADDR": "127.0.0.1:9100", "COFFER_JOIN": "c:3, d:4"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-1" || cfg.AccountID != "333333333333" || cfg.GRPCAddr != "127.0.0.1:9100" {
		t.Fatalf("region %q account %q grpc %q", cfg.Region, cfg.AccountID, cfg.GRPCAddr)
	}
	if cfg.Raft.HeartbeatTimeout != 2*time.Second || cfg.Raft.ElectionTimeout != 3*time.Second {
		t.Fatalf("durations from file: %v %v", cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout)
	}
	if strings.Join(cfg.Cluster.Join, ",") != "c:3,d:4" {
		t.Fatalf("join %v, want the environment's", cfg.Cluster.Join)
	}
	if cfg.Raft.LeaderLeaseTimeout != defaultConfig().Raft.LeaderLeaseTimeout {
		t.Fatalf("unset value lost its default")
	}
}

// The rotation engine's settings come from the rotation section, the
// environment and flags, with the engine's defaults underneath.
func TestRotationConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("rotation:\n  retry_base: 30s\n  step_timeout: 2m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, []string{"--config", file, "--rotation-interval", "1s"}, map[string]string{"COFFER_ROTATION_RETRY_MAX": "10m"})
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.rotationConfig()
	if got.Interval != time.Second || got.RetryBase != 30*time.Second || got.RetryMax != 10*time.Minute || got.StepTimeout != 2*time.Minute {
		t.Fatalf("rotation config %+v", got)
	}
	if d := defaultConfig().rotationConfig(); d.Interval != 5*time.Second || d.RetryBase != time.Minute || d.RetryMax != time.Hour || d.StepTimeout != 5*time.Minute {
		t.Fatalf("default rotation config %+v", d)
	}
}

func TestConfigErrors(t *testing.T) {
	unknown := filepath.Join(t.TempDir(), "u.yaml")
	if err := os.WriteFile(unknown, []byte("regoin: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"--config", unknown}, nil, []string{"regoin"}},
		{[]string{"--region", "US_EAST", "--log-level", "loud"}, nil, []string{"region", "log_level"}},
		{[]string{"--grpc-addr", "nope"}, nil, []string{"grpc_addr"}},
		{[]string{"--gossip-addr", "", "--join", "a:1"}, nil, []string{"cluster.join needs cluster.gossip_addr"}},
		{[]string{"--cluster-ca-file", "/ca"}, nil, []string{"must be set together"}},
		{nil, map[string]string{"COFFER_MAINTENANCE_INTERVAL": "soon"}, []string{"COFFER_MAINTENANCE_INTERVAL"}},
		{[]string{"extra"}, nil, []string{"unexpected arguments"}},
		{[]string{"--rotation-retry-base", "2h", "--rotation-retry-max", "1h"}, nil, []string{"rotation.retry_base (2h0m0s) must not exceed rotation.retry_max (1h0m0s)"}},
		{[]string{"--rotation-interval", "0s"}, nil, []string{"rotation.interval, retry_base, retry_max and step_timeout must be positive"}},
		{[]string{"--wan-addr", "127.0.0.1:7404"}, nil, []string{"regions.wan_addr needs regions.bind_addr"}},
		{[]string{"--region-addr", "127.0.0.1:7403", "--wan-join", "x:1"}, nil, []string{"regions.wan_join needs regions.wan_addr"}},
		{[]string{"--region-addr", "nope"}, nil, []string{"regions.bind_addr"}},
		{[]string{"--metrics-addr", "nope"}, nil, []string{"metrics_addr"}},
		{[]string{"--metrics-addr", "0.0.0.0:7490"}, nil, []string{"metrics_addr 0.0.0.0:7490 is not a loopback address"}},
		{nil, map[string]string{"COFFER_REQUEST_LOG_SAMPLE": "-1"}, []string{"request_log_sample -1"}},
		{[]string{"--api-advertise-addr", "nope"}, nil, []string{"api_advertise_addr"}},
	}
	for _, c := range cases {
		_, err := load(t, c.args, c.env)
		if err == nil {
			t.Errorf("%v %v: no error", c.args, c.env)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: error %q does not mention %q", c.args, c.env, err, w)
			}
		}
	}
}

// The WAN flags land in the regions section.
func TestConfigRegions(t *testing.T) {
	cfg, err := load(t, []string{"--region-addr", "127.0.0.1:7403", "--wan-addr", "127.0.0.1:7404"},
		map[string]string{"COFFER_WAN_JOIN": "10.0.0.1:7404, 10.1.0.1:7404"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Regions.BindAddr != "127.0.0.1:7403" || cfg.Regions.WANAddr != "127.0.0.1:7404" ||
		strings.Join(cfg.Regions.WANJoin, ",") != "10.0.0.1:7404,10.1.0.1:7404" {
		t.Fatalf("regions config %+v", cfg.Regions)
	}
}

// A node listening on 0.0.0.0 (a container, a multi-homed host) names
// the addresses others reach it at: its API (gossiped, and named in a
// follower's redirect to the leader), its LAN and its WAN gossip.
func TestConfigAdvertiseAddrs(t *testing.T) {
	cfg, err := load(t, []string{"--grpc-addr", "0.0.0.0:7400", "--tls-cert-file", "/c", "--tls-key-file", "/k",
		"--api-advertise-addr", "127.0.0.1:17410", "--gossip-advertise-addr", "10.0.0.11:7402",
		"--region-addr", "0.0.0.0:7403", "--wan-addr", "0.0.0.0:7404"},
		map[string]string{"COFFER_WAN_ADVERTISE_ADDR": "10.9.0.11:7404"})
	if err != nil {
		t.Fatal(err)
	}
	if rc := cfg.raftConfig(nil); rc.APIAddr != "127.0.0.1:17410" {
		t.Fatalf("raft config APIAddr %q, want the advertised address", rc.APIAddr)
	}
	if cfg.Cluster.GossipAdvertiseAddr != "10.0.0.11:7402" || cfg.Regions.WANAdvertiseAddr != "10.9.0.11:7404" {
		t.Fatalf("gossip advertise %q, WAN advertise %q", cfg.Cluster.GossipAdvertiseAddr, cfg.Regions.WANAdvertiseAddr)
	}
}

func TestRunUsage(t *testing.T) {
	var out, errOut strings.Builder
	if code := run(t.Context(), nil, &out, &errOut, func(string) string { return "" }); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code := run(t.Context(), []string{"frobnicate"}, &out, &errOut, func(string) string { return "" }); code != 2 || !strings.Contains(errOut.String(), "unknown command") {
		t.Fatalf("unknown command: exit %d, %q", code, errOut.String())
	}
	if code := run(t.Context(), []string{"help"}, &out, &errOut, func(string) string { return "" }); code != 0 || !strings.Contains(out.String(), "cofferd dev") {
		t.Fatalf("help: exit %d", code)
	}
	key := filepath.Join(t.TempDir(), "k")
	if code := run(t.Context(), []string{"keygen", key}, &out, &errOut, func(string) string { return "" }); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut.String())
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", st, err)
	}
	if code := run(t.Context(), []string{"keygen", key}, &out, &errOut, func(string) string { return "" }); code != 1 {
		t.Fatalf("keygen over an existing key: exit %d, want 1", code)
	}
}

// Access control settings: the audit log defaults into the data dir, mTLS
// identities are checked, session bounds must be ordered.
func TestConfigAccessControl(t *testing.T) {
	cfg, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.auditPath() != "/tmp/d/audit.log" || cfg.certIdentities() != nil {
		t.Fatalf("defaults: audit %q, identities %v", cfg.auditPath(), cfg.certIdentities())
	}
	if cfg.serviceConfig().SessionDuration != time.Hour {
		t.Fatalf("default session %v", cfg.serviceConfig().SessionDuration)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "tls_cert_file: /c\ntls_key_file: /k\naudit:\n  path: /var/log/coffer/audit.log\n  max_bytes: 1048576\n" +
		"mtls:\n  client_ca_file: /ca\n  identities:\n    - {subject_cn: deploy-bot, principal: deployer}\n    - {spiffe_id: \"spiffe://example.org/app\", principal: app}\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = load(t, []string{"--config", file, "--session-max-duration", "2h"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := cfg.certIdentities()
	if cfg.auditPath() != "/var/log/coffer/audit.log" || cfg.Audit.MaxBytes != 1<<20 ||
		ids.BySubjectCN["deploy-bot"] != "deployer" || ids.BySPIFFEID["spiffe://example.org/app"] != "app" ||
		cfg.serviceConfig().MaxSessionDuration != 2*time.Hour {
		t.Fatalf("parsed %+v %+v", cfg.Audit, ids)
	}
	for _, tc := range []struct {
		yaml, want string
	}{
		{"mtls:\n  identities:\n    - {subject_cn: x, principal: y}\n", "mtls.identities need mtls.client_ca_file"},
		{"tls_cert_file: /c\ntls_key_file: /k\nmtls:\n  client_ca_file: /ca\n  identities:\n    - {subject_cn: x, spiffe_id: \"spiffe://a\", principal: y}\n", "exactly one of spiffe_id and subject_cn"},
		{"tls_cert_file: /c\ntls_key_file: /k\nmtls:\n  client_ca_file: /ca\n  identities:\n    - {subject_cn: x, principal: root}\n", `mtls.identities[0].principal "root" is reserved`},
		{"tls_cert_file: /c\ntls_key_file: /k\nmtls:\n  client_ca_file: /ca\n  identities:\n    - {subject_cn: x, principal: a}\n    - {spiffe_id: \"spiffe://a/b\", principal: Anonymous}\n", `mtls.identities[1].principal "Anonymous" is reserved`},
		{"session:\n  default_duration: 24h\n", "session durations"},
		{"audit:\n  max_bytes: -1\n", "audit.max_bytes"},
	} {
		if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := load(t, []string{"--config", file}, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("config %q: err %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
}

// The hardening sections: audit retention, storage bounds and the
// limits reach the node, with the node's defaults underneath, and wrong
// values are refused.
func TestLimitsConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "audit:\n  max_files: 4\n  max_age: 72h\n  min_free_bytes: 1048576\n  sample_interval: 30s\n" +
		"storage:\n  min_free_bytes: 2147483648\n  max_versions_per_secret: 20\n" +
		"limits:\n  connections_per_source: 32\n  http_read_timeout: 5s\n  snapshot_timeout: 1h\n  max_read_wait: 2s\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, []string{"--config", file, "--audit-delete-unshipped=true"}, map[string]string{"COFFER_AUDIT_MAX_FILES": "6"})
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.auditRetention(); r.MaxFiles != 6 || r.MaxAge != 72*time.Hour || !r.DeleteUnshipped {
		t.Fatalf("audit retention %+v", r)
	}
	if cfg.Audit.MinFreeBytes != 1<<20 || cfg.Audit.SampleInterval != 30*time.Second {
		t.Fatalf("audit %+v", cfg.Audit)
	}
	if sc, rc := cfg.serviceConfig(), cfg.raftConfig(nil); sc.MaxVersionsPerSecret != 20 || sc.MaxReadWait != 2*time.Second || rc.MinFreeBytes != 2<<30 {
		t.Fatalf("service %+v, raft min free %d", sc, rc.MinFreeBytes)
	}
	l := cfg.nodeLimits()
	if l.ConnectionsPerSource != 32 || l.HTTPReadTimeout != 5*time.Second || l.SnapshotTimeout != time.Hour {
		t.Fatalf("limits %+v", l)
	}
	if d := defaultConfig().nodeLimits(); l.MaxConcurrentStreams != d.MaxConcurrentStreams || l.HTTPWriteTimeout != d.HTTPWriteTimeout {
		t.Fatalf("unset limits lost their defaults: %+v", l)
	}
	for _, bad := range []map[string]string{
		{"COFFER_MAX_VERSIONS_PER_SECRET": "101"},
		{"COFFER_MAX_VERSIONS_PER_SECRET": "2"},
		{"COFFER_AUDIT_MAX_FILES": "-1"},
		{"COFFER_AUDIT_MAX_AGE": "-1h"},
	} {
		if _, err := load(t, nil, bad); err == nil {
			t.Errorf("%v was accepted", bad)
		}
	}
}

// The example configuration in deploy/ loads and validates.
func TestExampleConfig(t *testing.T) {
	if _, err := load(t, []string{"--config", filepath.Join("..", "..", "deploy", "cofferd.example.yaml")}, nil); err != nil {
		t.Fatal(err)
	}
}
