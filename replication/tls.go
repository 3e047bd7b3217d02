package replication

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc/credentials"
)

// ALPNRaft is the ALPN protocol a node offers when it dials a peer's
// cluster port for Raft traffic; gRPC on the same port negotiates "h2".
// Version 2 starts with the exchange of the two nodes' cluster ids
// (exchangeClusterIDs).
const ALPNRaft = "coffer-raft/2"

// alpnRaftLegacy is Raft as builds without cluster ids speak it, with no
// exchange. It is still offered and accepted, so a region can be upgraded
// one node at a time; the cluster id check holds between nodes that both
// speak version 2.
const alpnRaftLegacy = "coffer-raft/1"

// clusterServerName is the name every node certificate carries as a DNS SAN
// and every client verifies. Nodes are identified by their CA's signature,
// not by where they run, so one fixed name lets the standard verifier check
// the chain without pinning addresses that change with every reschedule.
const clusterServerName = "coffer-cluster"

// clockSkew backdates certificates so a peer whose clock runs a little
// behind accepts a certificate issued a moment ago.
const clockSkew = 5 * time.Minute

// ClusterTLS is the mutual-TLS material for node-to-node traffic in a
// region: every node presents a certificate signed by the region's cluster
// CA and accepts only peers that do.
type ClusterTLS struct {
	// CA holds the region's cluster CA: the only issuer a peer is accepted
	// from.
	CA *x509.CertPool
	// Cert is this node's certificate and key, presented on both sides of
	// every connection.
	Cert tls.Certificate
}

// LoadClusterTLS reads the cluster CA certificate and this node's
// certificate and key (PEM files). It fails unless the node certificate
// chains to the CA and carries the cluster name, so a misconfigured node
// stops at startup instead of being refused by every peer later.
func LoadClusterTLS(caFile, certFile, keyFile string) (*ClusterTLS, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster tls: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster tls: %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster tls: load node certificate: %w", err)
	}
	c := &ClusterTLS{CA: pool, Cert: cert}
	if err := c.verifyOwn(); err != nil {
		return nil, err
	}
	return c, nil
}

// verifyOwn checks the node certificate the way peers will.
func (c *ClusterTLS) verifyOwn() error {
	leaf := c.Cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Cert.Certificate[0]); err != nil {
			return fmt.Errorf("cluster tls: parse node certificate: %w", err)
		}
	}
	inter := x509.NewCertPool()
	for _, der := range c.Cert.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots: c.CA, Intermediates: inter, DNSName: clusterServerName,
			KeyUsages: []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			return fmt.Errorf("cluster tls: node certificate is not valid for the cluster CA: %w", err)
		}
	}
	return nil
}

// ServerConfig returns the TLS configuration of the cluster port: TLS 1.3,
// a client certificate signed by the cluster CA required, and ALPN offering
// Raft and gRPC.
func (c *ClusterTLS) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.CA,
		NextProtos:   []string{ALPNRaft, alpnRaftLegacy, "h2"},
	}
}

// ClientConfig returns the TLS configuration for dialing a peer's cluster
// port and speaking one of nextProtos (in order of preference): TLS 1.3,
// this node's certificate presented, and the peer's certificate verified
// against the cluster CA under the fixed cluster name rather than the
// peer's address.
func (c *ClusterTLS) ClientConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		RootCAs:      c.CA,
		ServerName:   clusterServerName,
		NextProtos:   nextProtos,
	}
}

// GRPCCredentials returns transport credentials for dialing peers' cluster
// gRPC (ALPN "h2").
func (c *ClusterTLS) GRPCCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(c.ClientConfig("h2"))
}

// RegionServerConfig is the TLS configuration of the region replication
// port: this node's certificate, and a client certificate required and
// checked by verify (against the CAs of the paired regions, which change
// while the node runs).
func (c *ClusterTLS) RegionServerConfig(verify func(rawCerts [][]byte) error) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verify(raw)
		},
		NextProtos: []string{"h2"},
	}
}

// RegionClientConfig is the TLS configuration for dialing another region's
// replication port: this node's certificate presented, the peer verified
// against peerCA (the CA recorded when the regions were paired) under the
// fixed cluster name.
func (c *ClusterTLS) RegionClientConfig(peerCA *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		RootCAs:      peerCA,
		ServerName:   clusterServerName,
		NextProtos:   []string{"h2"},
	}
}

// VerifyClientChain checks a client certificate chain (leaf first, DER)
// against roots for client authentication.
func VerifyClientChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("no client certificate")
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("parse client certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range raw[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// CA is a cluster certificate authority (ECDSA P-256), for `cofferd dev`,
// tests and `cofferd ca` commands.
type CA struct {
	// Cert is the self-signed CA certificate.
	Cert *x509.Certificate
	// Key signs node certificates.
	Key crypto.Signer
	// CertPEM is Cert, PEM-encoded, as nodes load it.
	CertPEM []byte
}

// NewCA creates a self-signed cluster CA valid for validFor.
func NewCA(commonName string, validFor time.Duration) (*CA, error) {
	if validFor <= 0 {
		return nil, errors.New("cluster ca: validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Coffer"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: parse certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// LoadCA reads a CA certificate and its private key (PEM files), checking
// that the key belongs to the certificate and the certificate is a CA.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: read certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("cluster ca: %s holds no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: parse certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("cluster ca: %s is not a CA certificate", certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: read key: %w", err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: %s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("cluster ca: key %s does not match certificate %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

// WriteFiles writes the CA certificate and key as PEM; the key file gets
// mode 0600. Each file is replaced atomically.
func (ca *CA) WriteFiles(certFile, keyFile string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("cluster ca: marshal key: %w", err)
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("cluster ca: write key: %w", err)
	}
	if err := writeFileAtomic(certFile, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("cluster ca: write certificate: %w", err)
	}
	return nil
}

// IssueNode issues a node certificate (client and server auth, DNS SANs
// "coffer-cluster" and nodeID, plus hosts: IPs become IP SANs, names DNS
// SANs) and returns the ClusterTLS ready to use and the PEMs to write.
func (ca *CA) IssueNode(nodeID string, hosts []string, validFor time.Duration) (tlsMaterial *ClusterTLS, certPEM, keyPEM []byte, err error) {
	if nodeID == "" {
		return nil, nil, nil, errors.New("cluster ca: node id is required")
	}
	if validFor <= 0 {
		return nil, nil, nil, errors.New("cluster ca: validity must be positive")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cluster ca: generate node key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(validFor)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter // a node certificate cannot outlive its issuer
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"Coffer"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{clusterServerName},
	}
	if nodeID != clusterServerName {
		tmpl.DNSNames = append(tmpl.DNSNames, nodeID)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cluster ca: issue node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cluster ca: parse node certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cluster ca: marshal node key: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tlsMaterial = &ClusterTLS{
		CA:   pool,
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return tlsMaterial, certPEM, keyPEM, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("cluster ca: serial number: %w", err)
	}
	return serial, nil
}

// parsePrivateKey accepts the PEM encodings openssl and Go write: PKCS#8,
// SEC 1 EC and PKCS#1 RSA.
func parsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key type %T cannot sign", key)
	}
	return signer, nil
}

// writeFileAtomic writes data to a temporary file beside path with perm and
// renames it over path, so a reader never sees half a key and an existing
// file's looser mode is not inherited.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
