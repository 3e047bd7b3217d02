package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// setting is one configuration value that an environment variable and a
// flag can set.
type setting struct {
	flag, env, usage string
	set              func(*Config, string) error
}

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func dur(dst func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*dst(c) = d
		return nil
	}
}

func integer(dst func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		*dst(c) = n
		return nil
	}
}

func boolean(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		*dst(c) = b
		return nil
	}
}

// settings lists every value settable by flag and COFFER_* variable.
var settings = []setting{
	{"node-id", "COFFER_NODE_ID", "node id, unique in the region", str(func(c *Config) *string { return &c.NodeID })},
	{"data-dir", "COFFER_DATA_DIR", "directory for state and Raft data", str(func(c *Config) *string { return &c.DataDir })},
	{"grpc-addr", "COFFER_GRPC_ADDR", "gRPC API listen address", str(func(c *Config) *string { return &c.GRPCAddr })},
	{"aws-addr", "COFFER_AWS_ADDR", "AWS Secrets Manager API listen address (empty: off)", str(func(c *Config) *string { return &c.AWSAddr })},
	{"metrics-addr", "COFFER_METRICS_ADDR", "Prometheus /metrics and health endpoints listen address (empty: off)", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"api-advertise-addr", "COFFER_API_ADVERTISE_ADDR", "gRPC API address clients reach this node at (default: the listener's)", str(func(c *Config) *string { return &c.APIAdvertiseAddr })},
	{"tls-cert-file", "COFFER_TLS_CERT_FILE", "TLS certificate for the gRPC and AWS APIs (cofferd ca issue --api)", str(func(c *Config) *string { return &c.TLSCertFile })},
	{"tls-key-file", "COFFER_TLS_KEY_FILE", "TLS key for the gRPC and AWS APIs", str(func(c *Config) *string { return &c.TLSKeyFile })},
	{"insecure-plaintext", "COFFER_INSECURE_PLAINTEXT", "serve the APIs off loopback without TLS (warns hourly)", boolean(func(c *Config) *bool { return &c.InsecurePlaintext })},
	{"partition", "COFFER_PARTITION", "ARN partition", str(func(c *Config) *string { return &c.Partition })},
	{"region", "COFFER_REGION", "region name used in ARNs", str(func(c *Config) *string { return &c.Region })},
	{"account-id", "COFFER_ACCOUNT_ID", "12-digit account id used in ARNs", str(func(c *Config) *string { return &c.AccountID })},
	{"seal-key-file", "COFFER_SEAL_KEY_FILE", "root key file (file seal)", str(func(c *Config) *string { return &c.Seal.KeyFile })},
	{"seal-type", "COFFER_SEAL_TYPE", "how the root key is released: file, shamir (key shares, coffer operator unseal) or pkcs11 (an HSM key)", str(func(c *Config) *string { return &c.Seal.Type })},
	{"seal-pkcs11-module", "COFFER_SEAL_PKCS11_MODULE", "pkcs11 seal: the token's PKCS#11 library", str(func(c *Config) *string { return &c.Seal.PKCS11.Module })},
	{"seal-pkcs11-token-label", "COFFER_SEAL_PKCS11_TOKEN_LABEL", "pkcs11 seal: the token's label", str(func(c *Config) *string { return &c.Seal.PKCS11.TokenLabel })},
	{"seal-pkcs11-pin", "COFFER_SEAL_PKCS11_PIN", "pkcs11 seal: the token user's PIN (prefer the variable: a flag shows in ps)", str(func(c *Config) *string { return &c.Seal.PKCS11.PIN })},
	{"raft-addr", "COFFER_RAFT_ADDR", "Raft listen address", str(func(c *Config) *string { return &c.Raft.BindAddr })},
	{"raft-advertise-addr", "COFFER_RAFT_ADVERTISE_ADDR", "Raft address peers dial", str(func(c *Config) *string { return &c.Raft.AdvertiseAddr })},
	{"bootstrap", "COFFER_BOOTSTRAP", "start a new region of this node alone when there is no Raft state (not with --join)", boolean(func(c *Config) *bool { return &c.Raft.Bootstrap })},
	{"bootstrap-expect", "COFFER_BOOTSTRAP_EXPECT", "form a new region once this many servers without state see each other (the same on every server)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		c.Raft.BootstrapExpect, c.Raft.bootstrapExpectSet = n, true
		return err
	}},
	{"consistency-check-interval", "COFFER_CONSISTENCY_CHECK_INTERVAL", "how often the leader compares the nodes' state hashes (0: off)", dur(func(c *Config) *time.Duration { return &c.Cluster.ConsistencyCheckInterval })},
	{"cluster-ca-file", "COFFER_CLUSTER_CA_FILE", "cluster CA certificate (mutual TLS between nodes)", str(func(c *Config) *string { return &c.Cluster.CAFile })},
	{"cluster-cert-file", "COFFER_CLUSTER_CERT_FILE", "this node's cluster certificate", str(func(c *Config) *string { return &c.Cluster.CertFile })},
	{"cluster-key-file", "COFFER_CLUSTER_KEY_FILE", "this node's cluster key", str(func(c *Config) *string { return &c.Cluster.KeyFile })},
	{"gossip-addr", "COFFER_GOSSIP_ADDR", "LAN gossip address (empty: no gossip, single node)", str(func(c *Config) *string { return &c.Cluster.GossipAddr })},
	{"gossip-advertise-addr", "COFFER_GOSSIP_ADVERTISE_ADDR", "LAN gossip address other nodes dial (default: the bound one)", str(func(c *Config) *string { return &c.Cluster.GossipAdvertiseAddr })},
	{"gossip-key-file", "COFFER_GOSSIP_KEY_FILE", "region gossip encryption key file", str(func(c *Config) *string { return &c.Cluster.GossipKeyFile })},
	{"join", "COFFER_JOIN", "comma-separated gossip addresses of other nodes", func(c *Config, v string) error {
		c.Cluster.Join = splitList(v)
		return nil
	}},
	{"region-addr", "COFFER_REGION_ADDR", "region replication listen address (empty: no cross-region replication)", str(func(c *Config) *string { return &c.Regions.BindAddr })},
	{"region-advertise-addr", "COFFER_REGION_ADVERTISE_ADDR", "region replication address other regions dial", str(func(c *Config) *string { return &c.Regions.AdvertiseAddr })},
	{"wan-addr", "COFFER_WAN_ADDR", "WAN gossip address (regions find each other)", str(func(c *Config) *string { return &c.Regions.WANAddr })},
	{"wan-advertise-addr", "COFFER_WAN_ADVERTISE_ADDR", "WAN gossip address other regions dial (default: the bound one)", str(func(c *Config) *string { return &c.Regions.WANAdvertiseAddr })},
	{"wan-join", "COFFER_WAN_JOIN", "comma-separated WAN gossip addresses of nodes in other regions", func(c *Config, v string) error {
		c.Regions.WANJoin = splitList(v)
		return nil
	}},
	{"wan-key-file", "COFFER_WAN_KEY_FILE", "WAN gossip encryption key file, the same in every region", str(func(c *Config) *string { return &c.Regions.WANKeyFile })},
	{"root-credentials-file", "COFFER_ROOT_CREDENTIALS_FILE", "where the root access key is written on first start", str(func(c *Config) *string { return &c.RootCredentialsFile })},
	{"root-access-key-id", "COFFER_ROOT_ACCESS_KEY_ID", "fixed root access key id (with the secret)", str(func(c *Config) *string { return &c.RootAccessKeyID })},
	{"root-secret-access-key", "COFFER_ROOT_SECRET_ACCESS_KEY", "fixed root secret access key", str(func(c *Config) *string { return &c.RootSecretAccessKey })},
	{"request-log-sample", "COFFER_REQUEST_LOG_SAMPLE", "log one request in N at info (0: request logs off)", integer(func(c *Config) *int64 { return &c.RequestLogSample })},
	{"log-level", "COFFER_LOG_LEVEL", "debug, info, warn or error", str(func(c *Config) *string { return &c.LogLevel })},
	{"log-format", "COFFER_LOG_FORMAT", "text or json", str(func(c *Config) *string { return &c.LogFormat })},
	{"maintenance-interval", "COFFER_MAINTENANCE_INTERVAL", "how often the leader purges expired deletions", dur(func(c *Config) *time.Duration { return &c.MaintenanceInterval })},
	{"access-flush-interval", "COFFER_ACCESS_FLUSH_INTERVAL", "how often last-accessed days are written", dur(func(c *Config) *time.Duration { return &c.AccessFlushInterval })},
	{"audit-path", "COFFER_AUDIT_PATH", "audit log file (default data_dir/audit.log)", str(func(c *Config) *string { return &c.Audit.Path })},
	{"audit-max-bytes", "COFFER_AUDIT_MAX_BYTES", "rotate the audit log at this size", integer(func(c *Config) *int64 { return &c.Audit.MaxBytes })},
	{"audit-max-files", "COFFER_AUDIT_MAX_FILES", "keep at most this many rotated audit files (shipped ones are deleted)", integer(func(c *Config) *int64 { return &c.Audit.MaxFiles })},
	{"audit-max-age", "COFFER_AUDIT_MAX_AGE", "delete shipped rotated audit files older than this", dur(func(c *Config) *time.Duration { return &c.Audit.MaxAge })},
	{"audit-delete-unshipped", "COFFER_AUDIT_DELETE_UNSHIPPED", "let audit retention delete files nobody marked shipped", boolean(func(c *Config) *bool { return &c.Audit.DeleteUnshipped })},
	{"storage-min-free-bytes", "COFFER_STORAGE_MIN_FREE_BYTES", "refuse writes below this much free space on the data volume (0: 1 GiB or a tenth of a small volume; -1: off)", integer(func(c *Config) *int64 { return &c.Storage.MinFreeBytes })},
	{"max-versions-per-secret", "COFFER_MAX_VERSIONS_PER_SECRET", "versions-per-secret quota (3-100)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		c.Storage.MaxVersionsPerSecret = n
		return err
	}},
	{"mtls-client-ca-file", "COFFER_MTLS_CLIENT_CA_FILE", "CA certificates gRPC client certificates must chain to", str(func(c *Config) *string { return &c.MTLS.ClientCAFile })},
	{"session-duration", "COFFER_SESSION_DURATION", "default lifetime of temporary credentials", dur(func(c *Config) *time.Duration { return &c.Session.DefaultDuration })},
	{"session-min-duration", "COFFER_SESSION_MIN_DURATION", "shortest temporary credentials", dur(func(c *Config) *time.Duration { return &c.Session.MinDuration })},
	{"session-max-duration", "COFFER_SESSION_MAX_DURATION", "longest temporary credentials", dur(func(c *Config) *time.Duration { return &c.Session.MaxDuration })},
	{"rotation-interval", "COFFER_ROTATION_INTERVAL", "how often the leader looks for due rotations", dur(func(c *Config) *time.Duration { return &c.Rotation.Interval })},
	{"rotation-retry-base", "COFFER_ROTATION_RETRY_BASE", "wait after a rotation's first failure (doubles per failure)", dur(func(c *Config) *time.Duration { return &c.Rotation.RetryBase })},
	{"rotation-retry-max", "COFFER_ROTATION_RETRY_MAX", "longest wait between rotation retries", dur(func(c *Config) *time.Duration { return &c.Rotation.RetryMax })},
	{"rotation-step-timeout", "COFFER_ROTATION_STEP_TIMEOUT", "bound on one call of a rotation function", dur(func(c *Config) *time.Duration { return &c.Rotation.StepTimeout })},
	{"allow-no-mlock", "COFFER_ALLOW_NO_MLOCK", "start even when the root key and keyring cannot be locked in memory (RLIMIT_MEMLOCK too low)", boolean(func(c *Config) *bool { return &c.AllowNoMlock })},
}

func splitList(v string) []string {
	var out []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// loadConfig builds the configuration from base, an optional YAML file,
// the environment and the flags in args.
func loadConfig(fs *flag.FlagSet, base Config, args []string, getenv func(string) string) (Config, error) {
	configFile := fs.String("config", getenv("COFFER_CONFIG"), "YAML configuration file (env COFFER_CONFIG)")
	values := map[string]*string{}
	for _, s := range settings {
		values[s.flag] = fs.String(s.flag, "", s.usage+" (env "+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg := base
	if *configFile != "" {
		raw, err := os.ReadFile(*configFile)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, fmt.Errorf("parse config %s: %w", *configFile, err)
		}
		var set struct {
			Raft struct {
				BootstrapExpect *int `yaml:"bootstrap_expect"`
			} `yaml:"raft"`
		}
		if err := yaml.Unmarshal(raw, &set); err == nil && set.Raft.BootstrapExpect != nil {
			cfg.Raft.bootstrapExpectSet = true
		}
	}
	for _, s := range settings {
		if v := getenv(s.env); v != "" {
			if err := s.set(&cfg, v); err != nil {
				return Config{}, fmt.Errorf("%s=%q: %w", s.env, v, err)
			}
		}
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		for _, s := range settings {
			if s.flag == f.Name && ferr == nil {
				if err := s.set(&cfg, *values[s.flag]); err != nil {
					ferr = fmt.Errorf("--%s=%q: %w", s.flag, *values[s.flag], err)
				}
			}
		}
	})
	if ferr != nil {
		return Config{}, ferr
	}
	return cfg, cfg.Validate()
}
