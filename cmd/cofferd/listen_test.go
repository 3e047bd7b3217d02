package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/test/testkit"
)

// An API address off loopback without TLS is a configuration error unless
// insecure_plaintext is set; loopback, TLS or the flag make it valid.
func TestPlaintextListenerOffLoopbackRefused(t *testing.T) {
	refused := [][]string{
		{"--grpc-addr", "0.0.0.0:7400"},
		{"--grpc-addr", "[::]:7400"},
		{"--grpc-addr", ":7400"},
		{"--grpc-addr", "10.0.0.11:7400"},
		{"--grpc-addr", "coffer-1.example.com:7400"},
		{"--aws-addr", "0.0.0.0:7480"},
	}
	for _, args := range refused {
		_, err := load(t, args, nil)
		key := strings.ReplaceAll(strings.TrimPrefix(args[0], "--"), "-", "_")
		if err == nil || !strings.Contains(err.Error(), key+" "+args[1]+" is not a loopback address") || !strings.Contains(err.Error(), "insecure_plaintext") {
			t.Errorf("%v: %v; want it refused, naming %s and the ways out", args, err, key)
		}
	}
	allowed := [][]string{
		{"--grpc-addr", "127.0.0.1:7400"},
		{"--grpc-addr", "[::1]:7400"},
		{"--grpc-addr", "localhost:7400", "--aws-addr", "127.0.0.2:7480"},
		{"--grpc-addr", "0.0.0.0:7400", "--tls-cert-file", "/c", "--tls-key-file", "/k"},
		{"--grpc-addr", "0.0.0.0:7400", "--aws-addr", "0.0.0.0:7480", "--insecure-plaintext=true"},
	}
	for _, args := range allowed {
		if _, err := load(t, args, nil); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := load(t, []string{"--grpc-addr", "0.0.0.0:7400"}, map[string]string{"COFFER_INSECURE_PLAINTEXT": "true"}); err != nil {
		t.Errorf("COFFER_INSECURE_PLAINTEXT=true: %v", err)
	}
}

// cofferd server refuses to start on 0.0.0.0 in plaintext; with
// --insecure-plaintext it starts, and warns.
func TestServerOnAllInterfaces(t *testing.T) {
	dir := t.TempDir()
	args := append(serverArgs(t, dir), "--grpc-addr", "0.0.0.0:0")
	r := start(t, nil, args...)
	if code := r.exit(t); code != 1 || !strings.Contains(r.stderr.String(), "grpc_addr 0.0.0.0:0 is not a loopback address") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 naming grpc_addr", code, r.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Fatalf("the refused node created its data directory: %v", err)
	}

	r = start(t, nil, append(args, "--insecure-plaintext=true")...)
	r.waitFor(t, &r.stderr, "node ready")
	log := r.stderr.String()
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "insecure_plaintext: API listeners serve plaintext off loopback") || !strings.Contains(log, "0.0.0.0:0") {
		t.Fatalf("no warning about plaintext on 0.0.0.0:\n%s", log)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// cofferd ca issue --api issues a server certificate from the region's CA
// for the hosts clients connect to: server authentication only, those
// names and addresses, verifiable with the ca.crt written beside it.
func TestIssueAPICertificate(t *testing.T) {
	dir := t.TempDir()
	ca, out := filepath.Join(dir, "region"), filepath.Join(dir, "tls")
	r := start(t, nil, "ca", "create", ca)
	if code := r.exit(t); code != 0 || !strings.Contains(r.stdout.String(), "CA SHA-256 fingerprint: ") {
		t.Fatalf("ca create: exit %d, stdout %q", code, r.stdout.String())
	}
	r = start(t, nil, "ca", "issue", "--api", "--ca-dir", ca, "--host", "127.0.0.1", "--host", "coffer-1.example.com", "--out-dir", out)
	if code := r.exit(t); code != 0 {
		t.Fatalf("ca issue --api: exit %d: %s", code, r.stderr.String())
	}
	if st, err := os.Stat(filepath.Join(out, "server.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("server.key %v %v; want mode 0600", st, err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(out, "server.crt"), filepath.Join(out, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("extended key usage %v; want server authentication only", leaf.ExtKeyUsage)
	}
	caPEM, err := os.ReadFile(filepath.Join(out, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, name := range []string{"127.0.0.1", "coffer-1.example.com"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("certificate for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example.com"}); err == nil {
		t.Error("the certificate verifies for a host it was not issued for")
	}

	// A node started with it serves TLS that a client verifies with ca.crt.
	addr := testkit.FreeAddr(t)
	args := append(serverArgs(t, dir), "--grpc-addr", addr, "--tls-cert-file", filepath.Join(out, "server.crt"), "--tls-key-file", filepath.Join(out, "server.key"))
	r = start(t, nil, args...)
	r.waitFor(t, &r.stderr, "node ready")
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("TLS to the API with ca.crt: %v", err)
	}
	conn.Close()

	if code := start(t, nil, "ca", "issue", "--api", "--ca-dir", ca, "--out-dir", out).exit(t); code != 2 {
		t.Fatalf("ca issue --api without --host: exit %d, want 2", code)
	}
}
