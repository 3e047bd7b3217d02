package replication

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCAFilesRoundTripAndNodeCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("coffer test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	// A key file left world-readable by someone else must not keep its mode.
	if err := os.WriteFile(caKey, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteFiles(caCert, caKey); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(caKey)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %v, want 0600", fi.Mode().Perm())
	}

	loaded, err := LoadCA(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !loaded.Cert.IsCA || loaded.Cert.Subject.CommonName != "coffer test CA" {
		t.Fatalf("loaded CA %v differs from the written one", loaded.Cert.Subject)
	}

	material, certPEM, keyPEM, err := loaded.IssueNode("n1", []string{"127.0.0.1", "node1.internal", "n1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := material.Cert.Leaf
	if want := []string{"coffer-cluster", "n1", "node1.internal"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS SANs = %v, want %v", leaf.DNSNames, want)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP SANs = %v, want [127.0.0.1]", leaf.IPAddresses)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("EKUs = %v, want server and client auth", leaf.ExtKeyUsage)
	}
	if leaf.IsCA {
		t.Error("node certificate is a CA")
	}

	nodeCert, nodeKey := filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem")
	if err := os.WriteFile(nodeCert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nodeKey, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ct, err := LoadClusterTLS(caCert, nodeCert, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := ct.Cert.Leaf.Subject.CommonName; got != "n1" {
		t.Errorf("loaded node certificate CN = %q, want n1", got)
	}

	// A node certificate from another CA is refused at load time.
	other, err := NewCA("coffer test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, otherCert, otherKey, err := other.IssueNode("n9", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nodeCert, otherCert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nodeKey, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClusterTLS(caCert, nodeCert, nodeKey); err == nil || !strings.Contains(err.Error(), "not valid for the cluster CA") {
		t.Errorf("LoadClusterTLS with a foreign node certificate: err = %v, want a CA mismatch", err)
	}

	// A CA key that does not match its certificate is refused.
	otherCAKey := filepath.Join(dir, "other-ca-key.pem")
	if err := other.WriteFiles(filepath.Join(dir, "other-ca.pem"), otherCAKey); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(caCert, otherCAKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("LoadCA with a foreign key: err = %v, want a mismatch", err)
	}
}

func TestIssueNodeDoesNotOutliveCA(t *testing.T) {
	ca, err := NewCA("short CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _, err := ca.IssueNode("n1", nil, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cert.Leaf.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("node certificate expires %v, after its CA (%v)", m.Cert.Leaf.NotAfter, ca.Cert.NotAfter)
	}
	if _, _, _, err := ca.IssueNode("", nil, time.Hour); err == nil {
		t.Error("IssueNode with no node id succeeded")
	}
}
