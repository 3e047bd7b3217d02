package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/test/testkit"
)

// A production node's settings in the environment never reach cofferd dev:
// COFFER_CONFIG, COFFER_DATA_DIR and COFFER_GRPC_ADDR are ignored (and said
// to be), so dev mode serves neither that data directory nor that address.
func TestDevIgnoresProductionEnvironment(t *testing.T) {
	prod := t.TempDir()
	if err := os.WriteFile(filepath.Join(prod, "state.db"), []byte("a production node's state"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(prod, "cofferd.yaml")
	if err := os.WriteFile(config, []byte("data_dir: "+prod+"\ngrpc_addr: 0.0.0.0:7400\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	grpcAddr := testkit.FreeAddr(t)
	env := map[string]string{
		"COFFER_CONFIG": config, "COFFER_DATA_DIR": prod, "COFFER_GRPC_ADDR": "0.0.0.0:7400",
		"COFFER_REGION": "eu-west-1", "COFFER_ACCOUNT_ID": "111122223333",
	}
	r := start(t, env, "dev", "--grpc-addr", grpcAddr, "--aws-addr", "")
	r.waitFor(t, &r.stdout, "Coffer dev region is running")
	banner := r.stdout.String()
	if !strings.Contains(banner, "gRPC endpoint:  "+grpcAddr) || !strings.Contains(banner, "region eu-west-1, account 111122223333") {
		t.Fatalf("banner does not show the flag's address and the environment's region and account:\n%s", banner)
	}
	if strings.Contains(banner, prod) {
		t.Fatalf("dev mode uses the production data directory:\n%s", banner)
	}
	if !strings.Contains(r.stderr.String(), "ignoring COFFER_CONFIG, COFFER_DATA_DIR, COFFER_GRPC_ADDR") {
		t.Fatalf("stderr does not say what it ignored:\n%s", r.stderr.String())
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if entries, _ := os.ReadDir(prod); len(entries) != 2 {
		t.Fatalf("the production directory changed: %v", entries)
	}
}

// cofferd dev refuses a configuration file and addresses off loopback.
func TestDevRefusesProductionSettings(t *testing.T) {
	for _, args := range [][]string{
		{"--config", "/etc/coffer/cofferd.yaml"},
		{"--grpc-addr", "0.0.0.0:7400"},
		{"--grpc-addr", ":7400"},
		{"--aws-addr", "10.0.0.11:7480"},
		{"--seal-key-file", "/etc/coffer/root.key"},
	} {
		r := start(t, nil, append([]string{"dev"}, args...)...)
		if code := r.exit(t); code != 2 {
			t.Errorf("dev %v: exit %d, want 2; stderr %s", args, code, r.stderr.String())
		}
	}
	r := start(t, nil, "dev", "-h")
	if code := r.exit(t); code != 0 {
		t.Fatalf("dev -h: exit %d", code)
	}
	for _, env := range devEnv {
		if !strings.Contains(r.stderr.String(), env) {
			t.Errorf("dev -h does not list %s:\n%s", env, r.stderr.String())
		}
	}
}

// A data directory holding a node's state that dev mode did not create is
// refused; one it made (marked) is used again.
func TestDevRefusesNonDevDataDir(t *testing.T) {
	for _, state := range []string{"state.db", "raft"} {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, state), 0o700); err != nil {
			t.Fatal(err)
		}
		r := start(t, nil, "dev", "--data-dir", dir, "--grpc-addr", testkit.FreeAddr(t), "--aws-addr", "")
		if code := r.exit(t); code != 1 || !strings.Contains(r.stderr.String(), "cofferd dev did not create (no .coffer-dev marker)") {
			t.Fatalf("data dir with %s: exit %d, stderr %s; want 1 and the reason", state, code, r.stderr.String())
		}
	}
	if err := claimDevDataDir(filepath.Join(t.TempDir(), "new")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := claimDevDataDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := claimDevDataDir(dir); err != nil {
		t.Fatalf("a marked dev data directory with state: %v", err)
	}
	if err := claimDevDataDir(t.TempDir()); errors.Is(err, errNotDevData) {
		t.Fatal("an empty directory refused")
	}
}
