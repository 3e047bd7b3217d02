package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/storage/kms"
)

// Config is cofferd's configuration. It is read from a YAML file, then
// COFFER_* environment variables, then flags, each overriding the one before;
// defaults live in defaultConfig only.
type Config struct {
	// NodeID is the node's stable id within its region.
	NodeID string `yaml:"node_id"`
	// DataDir holds state.db (the state machine) and raft/ (log, snapshots).
	DataDir string `yaml:"data_dir"`
	// GRPCAddr is where the gRPC API listens.
	GRPCAddr string `yaml:"grpc_addr"`
	// AWSAddr is where the AWS Secrets Manager protocol (awsJson1_1,
	// SigV4) listens; empty turns it off.
	AWSAddr string `yaml:"aws_addr"`
	// MetricsAddr is where /metrics (Prometheus) and the health endpoints
	// (/livez, /readyz, /v1/sys/health) listen; empty turns it off. It
	// serves TLS with tls_cert_file when that is set, and needs it off
	// loopback like the APIs.
	MetricsAddr string `yaml:"metrics_addr"`
	// APIAdvertiseAddr is the gRPC API address clients reach this node at,
	// gossiped to the region (cluster status, and the leader address a
	// follower names when it redirects a region operation). Empty: the
	// listener's own address, which is useless when it listens on 0.0.0.0
	// (it reads [::]:7400) or behind NAT (containers' published ports).
	APIAdvertiseAddr string `yaml:"api_advertise_addr"`
	// TLSCertFile and TLSKeyFile turn on TLS for the gRPC and AWS APIs
	// (`cofferd ca issue --api`). An API address off loopback needs them.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// InsecurePlaintext lets the APIs listen off loopback without TLS; the
	// node then warns at start and every hour.
	InsecurePlaintext bool `yaml:"insecure_plaintext"`

	Partition string `yaml:"partition"`
	Region    string `yaml:"region"`
	AccountID string `yaml:"account_id"`

	Seal    SealConfig    `yaml:"seal"`
	Raft    RaftConfig    `yaml:"raft"`
	Cluster ClusterConfig `yaml:"cluster"`
	Regions RegionsConfig `yaml:"regions"`

	// LogLevel is debug, info, warn or error; LogFormat is text or json.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// RequestLogSample logs one request line in this many at Info: 0 (the
	// default) none, 1 every request. The others are logged at Debug, and
	// a request that failed inside the server (InternalServiceError)
	// always at Error.
	RequestLogSample int64 `yaml:"request_log_sample"`

	// RootCredentialsFile is where the root principal's access key is
	// written (mode 0600) on the region's first start; default
	// data_dir/root-credentials.
	RootCredentialsFile string `yaml:"root_credentials_file"`
	// RootAccessKeyID and RootSecretAccessKey fix the root access key
	// instead of generating one (test suites with fixed credentials).
	RootAccessKeyID     string `yaml:"root_access_key_id"`
	RootSecretAccessKey string `yaml:"root_secret_access_key"`

	MaintenanceInterval time.Duration `yaml:"maintenance_interval"`
	AccessFlushInterval time.Duration `yaml:"access_flush_interval"`

	Audit    AuditConfig    `yaml:"audit"`
	Storage  StorageConfig  `yaml:"storage"`
	Limits   LimitsConfig   `yaml:"limits"`
	MTLS     MTLSConfig     `yaml:"mtls"`
	Session  SessionConfig  `yaml:"session"`
	Rotation RotationConfig `yaml:"rotation"`
	// WebIdentityIssuers are the OIDC issuers STS
	// AssumeRoleWithWebIdentity accepts tokens from.
	WebIdentityIssuers []WebIdentityIssuerConfig `yaml:"web_identity_issuers"`

	// AllowNoMlock lets cofferd start when it cannot lock the root key and
	// keyring in memory (RLIMIT_MEMLOCK too low), with the keys unlocked
	// and a warning. Off by default: cofferd refuses to start instead,
	// naming the limit to raise. cofferd dev turns it on.
	AllowNoMlock bool `yaml:"allow_no_mlock"`
}

// MTLSConfig lets gRPC clients authenticate with TLS client certificates
// (it needs tls_cert_file and tls_key_file).
type MTLSConfig struct {
	// ClientCAFile holds the CA certificates client certificates must
	// chain to.
	ClientCAFile string `yaml:"client_ca_file"`
	// Identities map certificates to principals.
	Identities []CertIdentity `yaml:"identities"`
}

// CertIdentity maps one certificate identity to a principal: a SPIFFE ID
// (URI SAN) or a subject common name.
type CertIdentity struct {
	SPIFFEID  string `yaml:"spiffe_id"`
	SubjectCN string `yaml:"subject_cn"`
	Principal string `yaml:"principal"`
}

// SessionConfig bounds temporary credentials (GetSessionToken).
type SessionConfig struct {
	DefaultDuration time.Duration `yaml:"default_duration"`
	MinDuration     time.Duration `yaml:"min_duration"`
	MaxDuration     time.Duration `yaml:"max_duration"`
}

// RotationConfig tunes the rotation engine the region leader runs.
type RotationConfig struct {
	// Interval is how often the leader looks for due rotations and retries.
	Interval time.Duration `yaml:"interval"`
	// RetryBase is the wait after a rotation's first failure; it doubles
	// with each further failure up to RetryMax.
	RetryBase time.Duration `yaml:"retry_base"`
	RetryMax  time.Duration `yaml:"retry_max"`
	// StepTimeout bounds one call of a rotation function.
	StepTimeout time.Duration `yaml:"step_timeout"`
}

// SealConfig says how the root key is released.
type SealConfig struct {
	// Type is "file": the root key is read from KeyFile; or "shamir": the
	// node starts sealed and waits for key shares (`cofferd operator init`
	// made them and data_dir/seal.json).
	// "pkcs11": an HSM key unwraps the root key that seal.json holds
	// wrapped, at every start, with no operator (a cofferd built with the
	// pkcs11 tag only).
	Type    string `yaml:"type"`
	KeyFile string `yaml:"key_file"`
	// PKCS11 reaches the HSM of the pkcs11 seal.
	PKCS11 PKCS11SealConfig `yaml:"pkcs11"`
}

// PKCS11SealConfig reaches the token that holds the pkcs11 seal's key; the
// key's label is in seal.json.
type PKCS11SealConfig struct {
	// Module is the token's PKCS#11 library.
	Module string `yaml:"module"`
	// TokenLabel selects the token.
	TokenLabel string `yaml:"token_label"`
	// PIN logs in as the token's user; prefer COFFER_SEAL_PKCS11_PIN to
	// the file. Never logged.
	PIN string `yaml:"pin"`
}

// ClusterConfig is how the nodes of a region find and trust each other.
type ClusterConfig struct {
	// CAFile, CertFile and KeyFile are the cluster mutual-TLS material
	// (`cofferd ca create` / `cofferd ca issue`). Empty: the node makes a
	// private CA in data_dir/tls, which is enough for a single node.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// GossipAddr is the LAN gossip (memberlist) address; empty disables
	// gossip, for a single-node region.
	GossipAddr          string `yaml:"gossip_addr"`
	GossipAdvertiseAddr string `yaml:"gossip_advertise_addr"`
	// GossipKeyFile holds the region's gossip encryption key; empty: a key
	// in data_dir/gossip.key, made on first start.
	GossipKeyFile string `yaml:"gossip_key_file"`
	// Join lists other nodes' gossip addresses.
	Join []string `yaml:"join"`
	// DeadServerTimeout is how long a node may be dead before the leader
	// removes it (only while quorum stays safe); MinQuorum is the voter
	// count autopilot never goes below.
	DeadServerTimeout time.Duration `yaml:"dead_server_timeout"`
	MinQuorum         int           `yaml:"min_quorum"`
	// ConsistencyCheckInterval is how often the leader checks that every
	// node's state hashes the same at one index (also when a node starts or
	// comes back); 0 turns the automatic checks off (`coffer cluster check`
	// still runs one).
	ConsistencyCheckInterval time.Duration `yaml:"consistency_check_interval"`
}

// RegionsConfig is how a region reaches other regions: the region
// replication port (mutual TLS; peers' CAs are trusted only once paired)
// and the WAN gossip pool.
type RegionsConfig struct {
	// BindAddr is the region replication port; empty turns cross-region
	// replication off on this node.
	BindAddr      string `yaml:"bind_addr"`
	AdvertiseAddr string `yaml:"advertise_addr"`
	// WANAddr is the WAN gossip address; empty: no WAN pool (regions still
	// replicate to the addresses recorded when they were paired).
	WANAddr          string `yaml:"wan_addr"`
	WANAdvertiseAddr string `yaml:"wan_advertise_addr"`
	// WANJoin lists WAN gossip addresses of nodes in any region.
	WANJoin []string `yaml:"wan_join"`
	// WANKeyFile holds the WAN gossip key, the same file in every region;
	// empty: data_dir/wan.key, made on first start.
	WANKeyFile string `yaml:"wan_key_file"`
}

// RaftConfig is the Raft part of the configuration.
type RaftConfig struct {
	BindAddr      string `yaml:"bind_addr"`
	AdvertiseAddr string `yaml:"advertise_addr"`
	// Bootstrap starts a new region of this node alone when it has no Raft
	// state (a single node; others may join it later). It is bootstrap_expect
	// 1, and refused with cluster.join or a bootstrap_expect above 1.
	Bootstrap bool `yaml:"bootstrap"`
	// BootstrapExpect forms a new region of that many voters: a node without
	// Raft state waits until it sees that many servers of its region in the
	// gossip pool, none with state, all expecting the same number; the one
	// with the lowest node id then bootstraps them all. A node that finds
	// the region already formed waits to be added. Give every server of a
	// new region the same value (default 3).
	BootstrapExpect int `yaml:"bootstrap_expect"`
	// bootstrapExpectSet is whether a file, variable or flag set
	// BootstrapExpect (so bootstrap: true over the default is no conflict).
	bootstrapExpectSet bool

	HeartbeatTimeout   time.Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
	ApplyTimeout       time.Duration `yaml:"apply_timeout"`
	SnapshotThreshold  uint64        `yaml:"snapshot_threshold"`
	SnapshotInterval   time.Duration `yaml:"snapshot_interval"`
	TrailingLogs       uint64        `yaml:"trailing_logs"`
}

func defaultConfig() Config {
	rd := replication.DefaultConfig()
	sd := server.DefaultConfig()
	rot := rotation.DefaultConfig()
	host, _ := os.Hostname()
	if host == "" {
		host = "coffer-1"
	}
	return Config{
		NodeID:      host,
		DataDir:     "/var/lib/coffer",
		GRPCAddr:    "127.0.0.1:7400",
		AWSAddr:     "127.0.0.1:7480",
		MetricsAddr: "127.0.0.1:7490",
		Partition:   sd.Partition,
		Region:      sd.Region,
		AccountID:   sd.AccountID,
		Seal:        SealConfig{Type: "file", KeyFile: "/etc/coffer/root.key"},
		Raft: RaftConfig{
			BindAddr:           rd.BindAddr,
			BootstrapExpect:    3,
			HeartbeatTimeout:   rd.HeartbeatTimeout,
			ElectionTimeout:    rd.ElectionTimeout,
			LeaderLeaseTimeout: rd.LeaderLeaseTimeout,
			ApplyTimeout:       rd.ApplyTimeout,
			SnapshotThreshold:  rd.SnapshotThreshold,
			SnapshotInterval:   rd.SnapshotInterval,
			TrailingLogs:       rd.TrailingLogs,
		},
		Cluster:             ClusterConfig{DeadServerTimeout: 30 * time.Second, MinQuorum: 3, ConsistencyCheckInterval: 5 * time.Minute},
		LogLevel:            "info",
		LogFormat:           "text",
		MaintenanceInterval: sd.MaintenanceInterval,
		AccessFlushInterval: sd.AccessFlushInterval,
		Session: SessionConfig{
			DefaultDuration: server.DefaultSessionDuration,
			MinDuration:     server.DefaultMinSessionDuration,
			MaxDuration:     server.DefaultMaxSessionDuration,
		},
		Rotation: RotationConfig{Interval: rot.Interval, RetryBase: rot.RetryBase, RetryMax: rot.RetryMax, StepTimeout: rot.StepTimeout},
		Audit:    defaultAuditConfig(),
		Storage:  defaultStorageConfig(),
		Limits:   defaultLimitsConfig(),
	}
}

// Validate reports every problem with c at once, so an operator fixes a
// config file in one pass.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeID == "" {
		add("node_id is required")
	}
	errs = append(errs, c.validateWebIdentity()...)
	if c.DataDir == "" {
		add("data_dir is required")
	}
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		add("grpc_addr %q is not host:port: %v", c.GRPCAddr, err)
	}
	if c.AWSAddr != "" {
		if _, _, err := net.SplitHostPort(c.AWSAddr); err != nil {
			add("aws_addr %q is not host:port: %v", c.AWSAddr, err)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			add("metrics_addr %q is not host:port: %v", c.MetricsAddr, err)
		}
	}
	if c.APIAdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.APIAdvertiseAddr); err != nil {
			add("api_advertise_addr %q is not host:port: %v", c.APIAdvertiseAddr, err)
		}
	}
	if n := countSet(c.Cluster.CAFile, c.Cluster.CertFile, c.Cluster.KeyFile); n != 0 && n != 3 {
		add("cluster.ca_file, cluster.cert_file and cluster.key_file must be set together")
	}
	if c.Cluster.GossipAddr != "" {
		if _, _, err := net.SplitHostPort(c.Cluster.GossipAddr); err != nil {
			add("cluster.gossip_addr %q is not host:port: %v", c.Cluster.GossipAddr, err)
		}
	}
	if len(c.Cluster.Join) > 0 && c.Cluster.GossipAddr == "" {
		add("cluster.join needs cluster.gossip_addr")
	}
	errs = append(errs, c.validateFormation()...)
	for name, addr := range map[string]string{"regions.bind_addr": c.Regions.BindAddr, "regions.wan_addr": c.Regions.WANAddr} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			add("%s %q is not host:port: %v", name, addr, err)
		}
	}
	if c.Regions.WANAddr != "" && c.Regions.BindAddr == "" {
		add("regions.wan_addr needs regions.bind_addr (the region replication port)")
	}
	if len(c.Regions.WANJoin) > 0 && c.Regions.WANAddr == "" {
		add("regions.wan_join needs regions.wan_addr")
	}
	if (c.RootAccessKeyID == "") != (c.RootSecretAccessKey == "") {
		add("root_access_key_id and root_secret_access_key must be set together")
	}
	if c.RootAccessKeyID != "" && (len(c.RootAccessKeyID) < 16 || len(c.RootSecretAccessKey) < 16) {
		add("root access key id and secret must be at least 16 characters")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("tls_cert_file and tls_key_file must be set together")
	}
	errs = append(errs, c.validateLimits()...)
	for _, l := range []struct{ key, name, addr string }{{"grpc_addr", "gRPC", c.GRPCAddr}, {"aws_addr", "AWS", c.AWSAddr}, {"metrics_addr", "metrics", c.MetricsAddr}} {
		if l.addr == "" {
			continue
		}
		if err := node.CheckListener(l.name, l.addr, c.TLSCertFile != "", c.InsecurePlaintext); errors.Is(err, node.ErrPlaintextListener) {
			add("%s %s is not a loopback address: set tls_cert_file and tls_key_file (cofferd ca issue --api …), or insecure_plaintext: true to serve plaintext anyway", l.key, l.addr)
		}
	}
	if c.MTLS.ClientCAFile != "" && c.TLSCertFile == "" {
		add("mtls.client_ca_file needs tls_cert_file and tls_key_file: client certificates need TLS")
	}
	if len(c.MTLS.Identities) > 0 && c.MTLS.ClientCAFile == "" {
		add("mtls.identities need mtls.client_ca_file")
	}
	for i, id := range c.MTLS.Identities {
		if (id.SPIFFEID == "") == (id.SubjectCN == "") || id.Principal == "" {
			add("mtls.identities[%d] must set exactly one of spiffe_id and subject_cn, and principal", i)
		}
		if id.SPIFFEID != "" && !strings.HasPrefix(id.SPIFFEID, "spiffe://") {
			add("mtls.identities[%d].spiffe_id %q must start with spiffe://", i, id.SPIFFEID)
		}
		if server.ReservedPrincipal(id.Principal) {
			// A certificate must not stand for root or the anonymous
			// caller: either would give its holder full access.
			add("mtls.identities[%d].principal %q is reserved; map certificates to principals created with iam create-principal", i, id.Principal)
		}
	}
	switch c.Seal.Type {
	case "file", "shamir":
	case "pkcs11":
		if !kms.PKCS11Available {
			add("seal.type pkcs11: %v", kms.ErrPKCS11NotBuilt)
		}
		if c.Seal.PKCS11.Module == "" || c.Seal.PKCS11.TokenLabel == "" {
			add("seal.pkcs11.module and seal.pkcs11.token_label are required for the pkcs11 seal")
		}
	default:
		add("seal.type %q is not supported (supported: file, shamir, pkcs11)", c.Seal.Type)
	}
	if c.Seal.Type == "file" && c.Seal.KeyFile == "" {
		add("seal.key_file is required for the file seal")
	}
	if c.RequestLogSample < 0 {
		add("request_log_sample %d must be 0 (off) or more", c.RequestLogSample)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level %q must be debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("log_format %q must be text or json", c.LogFormat)
	}
	if r := c.Rotation; r.Interval <= 0 || r.RetryBase <= 0 || r.RetryMax <= 0 || r.StepTimeout <= 0 {
		add("rotation.interval, retry_base, retry_max and step_timeout must be positive")
	} else if r.RetryBase > r.RetryMax {
		add("rotation.retry_base (%s) must not exceed rotation.retry_max (%s)", r.RetryBase, r.RetryMax)
	}
	if err := c.serviceConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	rc := c.raftConfig(nil)
	if c.Cluster.GossipAddr == "" {
		rc.BootstrapExpect = 0 // validateFormation said it in this file's terms
	}
	if err := rc.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func countSet(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

func (c Config) serviceConfig() server.Config {
	return server.Config{
		Partition: c.Partition, Region: c.Region, AccountID: c.AccountID,
		MaintenanceInterval: c.MaintenanceInterval, AccessFlushInterval: c.AccessFlushInterval,
		SessionDuration: c.Session.DefaultDuration, MinSessionDuration: c.Session.MinDuration,
		MaxSessionDuration: c.Session.MaxDuration,
		MaxReadWait:        c.Limits.MaxReadWait, MaxVersionsPerSecret: c.Storage.MaxVersionsPerSecret,
		WebIdentityIssuers: c.webIdentityIssuers(),
	}
}

// rootCredentialsFile is where the root access key is written:
// root_credentials_file, or data_dir/root-credentials.
func (c Config) rootCredentialsFile() string {
	if c.RootCredentialsFile != "" {
		return c.RootCredentialsFile
	}
	return filepath.Join(c.DataDir, "root-credentials")
}

// auditPath is where the audit log goes: audit.path, or data_dir/audit.log.
func (c Config) auditPath() string {
	if c.Audit.Path != "" {
		return c.Audit.Path
	}
	return filepath.Join(c.DataDir, "audit.log")
}

// certIdentities is the mTLS mapping for the server, or nil.
func (c Config) certIdentities() *server.CertIdentities {
	if len(c.MTLS.Identities) == 0 {
		return nil
	}
	ids := &server.CertIdentities{BySPIFFEID: map[string]string{}, BySubjectCN: map[string]string{}}
	for _, id := range c.MTLS.Identities {
		if id.SPIFFEID != "" {
			ids.BySPIFFEID[id.SPIFFEID] = id.Principal
		} else {
			ids.BySubjectCN[id.SubjectCN] = id.Principal
		}
	}
	return ids
}

func (c Config) rotationConfig() rotation.Config {
	r := c.Rotation
	return rotation.Config{Interval: r.Interval, RetryBase: r.RetryBase, RetryMax: r.RetryMax, StepTimeout: r.StepTimeout}
}

func (c Config) raftConfig(log *slog.Logger) replication.Config {
	return replication.Config{
		NodeID:             c.NodeID,
		Dir:                filepath.Join(c.DataDir, "raft"),
		BindAddr:           c.Raft.BindAddr,
		AdvertiseAddr:      c.Raft.AdvertiseAddr,
		APIAddr:            c.APIAdvertiseAddr,
		Bootstrap:          c.formsAlone(),
		BootstrapExpect:    c.bootstrapExpect(),
		HeartbeatTimeout:   c.Raft.HeartbeatTimeout,
		ElectionTimeout:    c.Raft.ElectionTimeout,
		LeaderLeaseTimeout: c.Raft.LeaderLeaseTimeout,
		ApplyTimeout:       c.Raft.ApplyTimeout,
		SnapshotThreshold:  c.Raft.SnapshotThreshold,
		SnapshotInterval:   c.Raft.SnapshotInterval,
		TrailingLogs:       c.Raft.TrailingLogs,
		MinFreeBytes:       c.Storage.MinFreeBytes,
		Region:             c.Region,
		Autopilot: replication.AutopilotConfig{
			DeadServerTimeout: c.Cluster.DeadServerTimeout,
			MinQuorum:         c.Cluster.MinQuorum,
		},
		ConsistencyCheckInterval: c.Cluster.ConsistencyCheckInterval,
		Gossip:                   replication.MembershipConfig{BindAddr: c.Cluster.GossipAddr},
		Logger:                   log,
	}
}
