package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// fileSealNode runs a file-seal node in dir, writes secret name = value
// through its API and stops it; it returns the key file.
func fileSealNode(t *testing.T, dir, name, value string) string {
	t.Helper()
	args := serverArgs(t, dir)
	grpcAddr := args[indexOf(args, "--grpc-addr")+1]
	r := start(t, rootEnv(nil), args...)
	r.waitFor(t, &r.stderr, "node ready")
	if _, err := secretsClient(t, grpcAddr).CreateSecret(t.Context(), &cofferv1.CreateSecretRequest{Name: name, SecretString: &value,
		ClientRequestToken: "token-migrate-000000000000000000000001"}); err != nil {
		t.Fatal(err)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	return filepath.Join(dir, "root.key")
}

// indexOf is the index of s in args.
func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// readSecret waits until the node at addr serves name and returns its
// value.
func readSecret(t *testing.T, addr, name string) string {
	t.Helper()
	sm := secretsClient(t, addr)
	var value string
	wait.Until(t, readyTimeout, func() error {
		got, err := sm.GetSecretValue(t.Context(), &cofferv1.GetSecretValueRequest{SecretId: name})
		value = got.GetSecretString()
		return err
	})
	return value
}

// TestMigrateSealFileToShamir: `cofferd operator migrate-seal` moves a
// file-sealed node's root key to key shares with both seals at hand (the
// key file read, seal.json written); the node then starts sealed, two of
// three shares unseal it and the secret written under the file seal reads
// (the root key did not change, nothing was rewritten). A missing key file
// or an existing seal is refused.
func TestMigrateSealFileToShamir(t *testing.T) {
	dir := t.TempDir()
	keyFile := fileSealNode(t, dir, "migrate/one", "written under the key file")
	dataDir := filepath.Join(dir, "data")
	stateBefore, err := os.ReadFile(filepath.Join(dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}

	migrate := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(t.Context(), append([]string{"operator", "migrate-seal", "--data-dir", dataDir}, args...), &out, &errOut, func(string) string { return "" })
		return out.String(), errOut.String(), code
	}
	if _, errOut, code := migrate("--from-key-file", filepath.Join(dir, "missing.key"), "--to", "shamir"); code != 1 || !strings.Contains(errOut, "no root key") {
		t.Fatalf("a missing key file: exit %d %q", code, errOut)
	}
	out, errOut, code := migrate("--from-key-file", keyFile, "--to", "shamir", "--shares", "3", "--threshold", "2")
	if code != 0 {
		t.Fatalf("migrate-seal: exit %d %q", code, errOut)
	}
	shares := parseShares(out)
	if len(shares) != 3 || !strings.Contains(out, "no data is rewritten") {
		t.Fatalf("migrate-seal printed:\n%s", out)
	}
	if _, errOut, code := migrate("--from-key-file", keyFile, "--to", "shamir"); code != 1 || !strings.Contains(errOut, "has a seal already") {
		t.Fatalf("a second migration: exit %d %q, want a refusal", code, errOut)
	}
	stateAfter, err := os.ReadFile(filepath.Join(dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stateBefore, stateAfter) {
		t.Fatal("the migration changed state.db")
	}

	grpcAddr := testkit.FreeAddr(t)
	r := start(t, rootEnv(nil), shamirArgs(t, dir, grpcAddr, "")...)
	r.waitFor(t, &r.stderr, "waiting for key shares")
	if resp := unsealShares(t, grpcAddr, shares[2], shares[0]); resp.GetSealed() {
		t.Fatalf("two of three new shares: %v, want unsealed", resp)
	}
	r.waitFor(t, &r.stderr, "node ready")
	if got := readSecret(t, grpcAddr, "migrate/one"); got != "written under the key file" {
		t.Fatalf("after the migration: %q", got)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
