package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/storage/kms"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	nodeValidity = 2 * 365 * 24 * time.Hour
)

// clusterTLS loads the configured cluster TLS material, or makes a private
// CA in the data directory when none is configured.
func clusterTLS(cfg Config, log *slog.Logger) (*replication.ClusterTLS, error) {
	if cfg.Cluster.CAFile != "" {
		t, err := replication.LoadClusterTLS(cfg.Cluster.CAFile, cfg.Cluster.CertFile, cfg.Cluster.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster TLS: %w", err)
		}
		return t, nil
	}
	dir := filepath.Join(cfg.DataDir, "tls")
	ca, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	if cfg.Cluster.GossipAddr != "" {
		log.Warn("no cluster TLS configured: using the private CA in " + dir +
			"; other nodes must use certificates issued from it (cofferd ca issue --ca-dir " + dir + ")")
	}
	t, _, _, err := ca.IssueNode(cfg.NodeID, hostsOf(cfg.Raft.BindAddr, cfg.Raft.AdvertiseAddr), nodeValidity)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	return t, nil
}

func loadOrCreateCA(dir string) (*replication.CA, error) {
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca, err := replication.LoadCA(certFile, keyFile)
	if err == nil {
		return ca, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if ca, err = replication.NewCA("Coffer cluster CA", caValidity); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if err := ca.WriteFiles(certFile, keyFile); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return ca, nil
}

func hostsOf(addrs ...string) []string {
	var hosts []string
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// gossipKey reads the region's gossip key, creating data_dir/gossip.key on
// first start when no key file is configured.
func gossipKey(cfg Config) ([]byte, error) {
	path := cfg.Cluster.GossipKeyFile
	if path == "" {
		path = filepath.Join(cfg.DataDir, "gossip.key")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := kms.GenerateKeyFile(path); err != nil {
				return nil, fmt.Errorf("gossip key: %w", err)
			}
		}
	}
	key, err := kms.FileSeal{Path: path}.RootKey()
	if err != nil {
		return nil, fmt.Errorf("gossip key %s: %w", path, err)
	}
	return key, nil
}

// runCA implements `cofferd ca create DIR` and `cofferd ca issue`.
func runCA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("usage: cofferd ca create DIR | cofferd ca issue --ca-dir DIR --node-id ID [--host H]... --out-dir DIR")}
	}
	switch args[0] {
	case "create":
		if len(args) != 2 {
			return usageError{errors.New("usage: cofferd ca create DIR")}
		}
		dir := args[1]
		if _, err := os.Stat(filepath.Join(dir, "ca.key")); err == nil {
			return fmt.Errorf("%s already holds a CA; refusing to overwrite it", dir)
		}
		if _, err := loadOrCreateCA(dir); err != nil {
			return err
		}
		if err := kms.GenerateKeyFile(filepath.Join(dir, "gossip.key")); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created the region's cluster CA (%s/ca.crt, ca.key) and gossip key (%s/gossip.key)\n", dir, dir)
		return nil
	case "issue":
		fs := flag.NewFlagSet("cofferd ca issue", flag.ContinueOnError)
		fs.SetOutput(stderr)
		caDir := fs.String("ca-dir", "", "directory with ca.crt and ca.key")
		nodeID := fs.String("node-id", "", "the node's id")
		outDir := fs.String("out-dir", "", "where to write node.crt, node.key and ca.crt")
		var hosts multiFlag
		fs.Var(&hosts, "host", "an address or DNS name of the node (repeatable)")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err}
		}
		if *caDir == "" || *nodeID == "" || *outDir == "" {
			return usageError{errors.New("--ca-dir, --node-id and --out-dir are required")}
		}
		ca, err := replication.LoadCA(filepath.Join(*caDir, "ca.crt"), filepath.Join(*caDir, "ca.key"))
		if err != nil {
			return err
		}
		_, certPEM, keyPEM, err := ca.IssueNode(*nodeID, hosts, nodeValidity)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*outDir, 0o700); err != nil {
			return err
		}
		for name, data := range map[string][]byte{"node.crt": certPEM, "node.key": keyPEM, "ca.crt": ca.CertPEM} {
			mode := os.FileMode(0o644)
			if name == "node.key" {
				mode = 0o600
			}
			if err := os.WriteFile(filepath.Join(*outDir, name), data, mode); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "issued a certificate for node %s in %s\n", *nodeID, *outDir)
		return nil
	}
	return usageError{fmt.Errorf("unknown ca command %q", args[0])}
}

type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
