package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage/kms"
)

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// nodeOptions turns a validated configuration into node options: it
// unseals the root key and loads (or makes) the cluster TLS material and
// gossip key.
func nodeOptions(cfg Config, log *slog.Logger) (node.Options, error) {
	return buildNodeOptions(cfg, log, false)
}

// buildNodeOptions is nodeOptions; with quietCA it does not warn about the
// private CA it makes when no cluster TLS is configured — cofferd dev, whose
// node.StartRegion issues the nodes' cluster certificates from the region's
// one CA (the private CA still anchors region replication there).
func buildNodeOptions(cfg Config, log *slog.Logger, quietCA bool) (node.Options, error) {
	lockMode, err := memoryLock(cfg, log, kms.CheckMemoryLock)
	if err != nil {
		return node.Options{}, err
	}
	// The Shamir seal's root key arrives later, share by share
	// (serveWith, awaitUnseal).
	var root []byte
	switch cfg.Seal.Type {
	case "file":
		root, err = kms.FileSeal{Path: cfg.Seal.KeyFile}.RootKey()
		if errors.Is(err, fs.ErrNotExist) {
			return node.Options{}, fmt.Errorf("unseal: no root key at %s; create one with `cofferd keygen %s` (and back it up): %w", cfg.Seal.KeyFile, cfg.Seal.KeyFile, err)
		}
		if err != nil {
			return node.Options{}, fmt.Errorf("unseal: %w", err)
		}
	case "pkcs11":
		if root, err = pkcs11RootKey(cfg.DataDir, cfg.Seal.PKCS11); err != nil {
			return node.Options{}, fmt.Errorf("unseal: %w", err)
		}
		log.Info("unsealed: the HSM unwrapped the root key", "token", cfg.Seal.PKCS11.TokenLabel)
	}
	rc := cfg.raftConfig(log)
	caLog := log
	if quietCA {
		caLog = slog.New(slog.DiscardHandler)
	}
	if rc.TLS, err = clusterTLS(cfg, caLog); err != nil {
		return node.Options{}, err
	}
	if cfg.Cluster.GossipAddr != "" {
		key, err := gossipKey(cfg)
		if err != nil {
			return node.Options{}, err
		}
		rc.Gossip = replication.MembershipConfig{
			BindAddr: cfg.Cluster.GossipAddr, AdvertiseAddr: cfg.Cluster.GossipAdvertiseAddr,
			Join: cfg.Cluster.Join, SecretKey: key,
		}
	}
	svcCfg := cfg.serviceConfig()
	svcCfg.MemoryLock = lockMode
	opts := node.Options{
		DataDir: cfg.DataDir, GRPCAddr: cfg.GRPCAddr, AWSAddr: cfg.AWSAddr, Service: svcCfg,
		Raft: rc, RootKey: root, SealType: cfg.Seal.Type, Logger: log, Rotation: cfg.rotationConfig(),
		RootAccessKeyID: cfg.RootAccessKeyID, RootSecretAccessKey: cfg.RootSecretAccessKey,
		AuditPath: cfg.auditPath(), AuditMaxBytes: cfg.Audit.MaxBytes, AuditSync: !cfg.Audit.NoSync,
		AuditRetention: cfg.auditRetention(), AuditMinFreeBytes: cfg.Audit.MinFreeBytes, AuditSampleInterval: cfg.Audit.SampleInterval,
		Limits: cfg.nodeLimits(), CertIdentities: cfg.certIdentities(),
	}
	if cfg.Regions.BindAddr != "" {
		if opts.Region, err = regionOptions(cfg); err != nil {
			return node.Options{}, err
		}
	}
	credFile := cfg.rootCredentialsFile()
	if opts.RootAccessKeyID == "" {
		// A file left by a start that saved the key and stopped before the
		// root principal was committed: that key is the one to create, so
		// the file stays right. (Where principals exist it is not used.)
		if id, secret, err := readCredentials(credFile); err == nil {
			opts.RootAccessKeyID, opts.RootSecretAccessKey = id, secret
		}
	}
	opts.OnRootCredentials = func(id, secret string) error {
		if err := writeCredentials(credFile, id, secret); err != nil {
			return fmt.Errorf("write the root credentials file: %w", err)
		}
		log.Info("wrote the root principal's access key before creating it (readable by this user only)", "path", credFile, "access_key_id", id)
		return nil
	}
	opts.InsecurePlaintext = cfg.InsecurePlaintext
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return node.Options{}, fmt.Errorf("load TLS key pair: %w", err)
		}
		opts.GRPCTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.MTLS.ClientCAFile != "" {
			pem, err := os.ReadFile(cfg.MTLS.ClientCAFile)
			if err != nil {
				return node.Options{}, fmt.Errorf("read mtls.client_ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return node.Options{}, fmt.Errorf("mtls.client_ca_file %s holds no PEM certificate", cfg.MTLS.ClientCAFile)
			}
			// Bearer credentials still work without a certificate; a
			// certificate that is offered must verify.
			opts.GRPCTLS.ClientCAs = pool
			opts.GRPCTLS.ClientAuth = tls.VerifyClientCertIfGiven
		}
		opts.AWSTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		opts.MetricsTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	opts.SealService = &runningSeal{dataDir: cfg.DataDir, sealType: cfg.Seal.Type, pkcs11: cfg.Seal.PKCS11, log: log}
	opts.MetricsAddr = cfg.MetricsAddr
	opts.RequestLogSample = int(cfg.RequestLogSample)
	return opts, nil
}

// memoryLock decides how the node holds its root key and keyring: locked in
// memory (kms.LockRequired) when this process can lock what a node needs
// (check, kms.CheckMemoryLock). When it cannot, cofferd refuses to start
// and says which limit to raise — a key swapped to disk outlives the
// process — unless allow_no_mlock asks to run with the keys unlocked, which
// it then warns about.
func memoryLock(cfg Config, log *slog.Logger, check func() error) (kms.LockMode, error) {
	err := check()
	if err == nil {
		return kms.LockRequired, nil
	}
	if !cfg.AllowNoMlock {
		return 0, fmt.Errorf("%w.\ncofferd keeps the root key and the keyring in locked memory so that they are never written to swap, "+
			"and needs RLIMIT_MEMLOCK of at least %d KiB: raise it (systemd: LimitMEMLOCK=infinity in the unit, as "+
			"deploy/systemd/cofferd.service sets; docker: --ulimit memlock=-1; a shell: ulimit -l unlimited), "+
			"or set allow_no_mlock: true (--allow-no-mlock=true) to run with the keys unlocked", err, kms.MinMemoryLock>>10)
	}
	log.Warn("RUNNING WITH THE ROOT KEY AND KEYRING UNLOCKED IN MEMORY (allow_no_mlock): they may be written to swap. "+
		"Raise RLIMIT_MEMLOCK (LimitMEMLOCK in the systemd unit, --ulimit memlock for docker) and turn allow_no_mlock off.", "err", err)
	return kms.LockBestEffort, nil
}

// regionOptions reads what cross-region replication needs: the region's
// CA certificate (handed to peers when pairing) and the WAN gossip key.
func regionOptions(cfg Config) (node.RegionOptions, error) {
	caFile := cfg.Cluster.CAFile
	if caFile == "" {
		caFile = filepath.Join(cfg.DataDir, "tls", "ca.crt")
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return node.RegionOptions{}, fmt.Errorf("region replication: read the cluster CA: %w", err)
	}
	ro := node.RegionOptions{BindAddr: cfg.Regions.BindAddr, AdvertiseAddr: cfg.Regions.AdvertiseAddr, CAPEM: caPEM}
	if cfg.Regions.WANAddr != "" {
		path := cfg.Regions.WANKeyFile
		if path == "" {
			path = filepath.Join(cfg.DataDir, "wan.key")
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				if err := kms.GenerateKeyFile(path); err != nil {
					return node.RegionOptions{}, fmt.Errorf("WAN key: %w", err)
				}
			}
		}
		key, err := kms.FileSeal{Path: path}.RootKey()
		if err != nil {
			return node.RegionOptions{}, fmt.Errorf("WAN key %s: %w", path, err)
		}
		ro.WAN = replication.MembershipConfig{
			BindAddr: cfg.Regions.WANAddr, AdvertiseAddr: cfg.Regions.WANAdvertiseAddr, Join: cfg.Regions.WANJoin, SecretKey: key,
		}
	}
	return ro, nil
}

// serve runs one node until ctx ends, then stops it cleanly. onReady is
// called once the node serves requests.
func serve(ctx context.Context, cfg Config, log *slog.Logger, onReady func(addr string)) error {
	return serveWith(ctx, cfg, log, nil, onReady)
}

// serveWith is serve with a hook that adjusts the node options.
func serveWith(ctx context.Context, cfg Config, log *slog.Logger, adjust func(*node.Options), onReady func(addr string)) error {
	opts, err := nodeOptions(cfg, log)
	if err != nil {
		return err
	}
	if adjust != nil {
		adjust(&opts)
	}
	if cfg.Seal.Type == "shamir" {
		if err := node.CheckListener("gRPC", opts.GRPCAddr, opts.GRPCTLS != nil, opts.InsecurePlaintext); err != nil {
			return err // key shares never cross a network in the clear
		}
		if opts.RootKey, err = awaitUnseal(ctx, cfg.DataDir, opts, log); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	n, err := node.Start(opts)
	clear(opts.RootKey)
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Stop(); err != nil {
			log.Warn("stop", "err", err)
		}
	}()
	if err := n.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if onReady != nil {
		onReady(n.Addr())
	}
	<-ctx.Done()
	log.Info("cofferd stopping")
	return nil
}
