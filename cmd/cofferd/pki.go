package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cofferhq/coffer/replication"
	"github.com/cofferhq/coffer/server"
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
		return usageError{errors.New("usage: cofferd ca create DIR | cofferd ca issue --ca-dir DIR (--node-id ID | --api) [--host H]... --out-dir DIR")}
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
		ca, err := replication.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
		if err != nil {
			return err
		}
		fp, err := server.CAFingerprint(ca.CertPEM)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created the region's cluster CA (%s/ca.crt, ca.key) and gossip key (%s/gossip.key)\n", dir, dir)
		fmt.Fprintf(stdout, "CA SHA-256 fingerprint: %s (other regions pair with --peer-ca-sha256 %s)\n", fp, fp)
		return nil
	case "issue":
		fs := flag.NewFlagSet("cofferd ca issue", flag.ContinueOnError)
		fs.SetOutput(stderr)
		caDir := fs.String("ca-dir", "", "directory with ca.crt and ca.key")
		nodeID := fs.String("node-id", "", "the node's id (cluster certificates)")
		api := fs.Bool("api", false, "issue the API server certificate (server.crt, server.key) for --host instead of a node's cluster certificate")
		outDir := fs.String("out-dir", "", "where to write node.crt and node.key (or server.crt and server.key) and ca.crt")
		var hosts multiFlag
		fs.Var(&hosts, "host", "an address or DNS name of the node, as clients reach it (repeatable)")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err}
		}
		switch {
		case *caDir == "" || *outDir == "":
			return usageError{errors.New("--ca-dir and --out-dir are required")}
		case *api && len(hosts) == 0:
			return usageError{errors.New("--api needs --host: each name and address clients connect to (the certificate names exactly those)")}
		case !*api && *nodeID == "":
			return usageError{errors.New("--node-id is required (or --api for an API server certificate)")}
		}
		ca, err := replication.LoadCA(filepath.Join(*caDir, "ca.crt"), filepath.Join(*caDir, "ca.key"))
		if err != nil {
			return err
		}
		names := [2]string{"node.crt", "node.key"}
		var certPEM, keyPEM []byte
		if *api {
			names = [2]string{"server.crt", "server.key"}
			certPEM, keyPEM, err = issueAPICert(ca, hosts, nodeValidity)
		} else {
			_, certPEM, keyPEM, err = ca.IssueNode(*nodeID, hosts, nodeValidity)
		}
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*outDir, 0o700); err != nil {
			return err
		}
		for name, data := range map[string][]byte{names[0]: certPEM, names[1]: keyPEM, "ca.crt": ca.CertPEM} {
			mode := os.FileMode(0o644)
			if name == names[1] {
				mode = 0o600
			}
			if err := os.WriteFile(filepath.Join(*outDir, name), data, mode); err != nil {
				return err
			}
		}
		if *api {
			fmt.Fprintf(stdout, "issued an API server certificate for %s in %s (tls_cert_file: %s, tls_key_file: %s; clients verify it with --ca-file %s)\n",
				strings.Join(hosts, ", "), *outDir, filepath.Join(*outDir, names[0]), filepath.Join(*outDir, names[1]), filepath.Join(*outDir, "ca.crt"))
			return nil
		}
		fmt.Fprintf(stdout, "issued a certificate for node %s in %s\n", *nodeID, *outDir)
		return nil
	}
	return usageError{fmt.Errorf("unknown ca command %q", args[0])}
}

// issueAPICert issues a certificate for the gRPC and AWS APIs from the
// region's CA: server authentication only (a client presenting it gets
// nowhere on the cluster port, which asks for client authentication), its
// hosts as IP and DNS SANs and the first one as common name, valid for
// validFor and never past the CA.
func issueAPICert(ca *replication.CA, hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("API certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("API certificate: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(validFor)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"Coffer"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("API certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("API certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
