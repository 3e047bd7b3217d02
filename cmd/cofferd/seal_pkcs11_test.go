//go:build pkcs11

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/testkit/softhsm"
	"github.com/cofferhq/coffer/test/wait"
)

// pkcs11Args are the flags of a single node with the pkcs11 seal on tok.
func pkcs11Args(t *testing.T, dir, grpcAddr, metricsAddr string, tok softhsm.Token) []string {
	return []string{"server", "--node-id", "n1", "--data-dir", filepath.Join(dir, "data"), "--seal-type", "pkcs11",
		"--seal-pkcs11-module", tok.Module, "--seal-pkcs11-token-label", tok.Label,
		"--grpc-addr", grpcAddr, "--aws-addr", "", "--raft-addr", testkit.FreeAddr(t),
		"--log-level", "info", "--maintenance-interval", "1h", "--bootstrap", "true", "--metrics-addr", metricsAddr}
}

// TestPKCS11SealServer: `cofferd operator init --seal pkcs11` makes a key
// in a real SoftHSM2 token and writes seal.json with the root key wrapped
// by it; cofferd with seal.type pkcs11 unseals on its own at every start
// (a secret written before a restart reads after it) and reports the seal
// in its metrics; the wrong PIN or token stops it with an error naming
// the token, never the PIN; nothing of the key or PIN is in seal.json or
// the logs.
func TestPKCS11SealServer(t *testing.T) {
	tok := softhsm.New(t, "coffer-node", "1234-user-pin")
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	env := rootEnv(map[string]string{"COFFER_SEAL_PKCS11_PIN": tok.PIN})

	var out, errOut bytes.Buffer
	initArgs := []string{"operator", "init", "--data-dir", dataDir, "--seal", "pkcs11",
		"--pkcs11-module", tok.Module, "--pkcs11-token-label", tok.Label}
	if code := run(t.Context(), initArgs, &out, &errOut, func(k string) string { return env[k] }); code != 0 {
		t.Fatalf("operator init: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), `key "coffer-root"`) {
		t.Fatalf("operator init printed %q", out.String())
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, sealFileName))
	if err != nil {
		t.Fatal(err)
	}
	var desc sealFile
	if err := json.Unmarshal(raw, &desc); err != nil || desc.Type != "pkcs11" || desc.KeyLabel != "coffer-root" || desc.Wrapped == "" {
		t.Fatalf("seal.json: %s (%v)", raw, err)
	}
	if strings.Contains(string(raw), tok.PIN) {
		t.Fatal("seal.json holds the PIN")
	}
	// A second init refuses to replace the seal.
	if code := run(t.Context(), initArgs, &out, &errOut, func(k string) string { return env[k] }); code == 0 {
		t.Fatal("a second operator init replaced the seal")
	}

	grpcAddr, metricsAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	args := pkcs11Args(t, dir, grpcAddr, metricsAddr, tok)
	r := start(t, env, args...)
	r.waitFor(t, &r.stderr, "node ready")
	if _, body := get("http://" + metricsAddr + "/metrics"); !strings.Contains(body, "\ncoffer_sealed 0\n") || !strings.Contains(body, `coffer_seal_info{type="pkcs11"} 1`) {
		t.Errorf("/metrics of a pkcs11-sealed node lacks coffer_sealed 0 and its seal type")
	}
	sm := secretsClient(t, grpcAddr)
	value := "under-the-hsm"
	if _, err := sm.CreateSecret(t.Context(), &cofferv1.CreateSecretRequest{Name: "hsm/one", SecretString: &value,
		ClientRequestToken: "token-pkcs11-0000000000000000000000001"}); err != nil {
		t.Fatal(err)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, r.stderr.String())
	}

	// Restart: the HSM unseals it again, and the data reads.
	r = start(t, env, args...)
	r.waitFor(t, &r.stderr, "node ready")
	wait.Until(t, readyTimeout, func() error {
		got, err := sm.GetSecretValue(t.Context(), &cofferv1.GetSecretValueRequest{SecretId: "hsm/one"})
		if err == nil && got.GetSecretString() != value {
			t.Fatalf("after a restart: %q", got.GetSecretString())
		}
		return err
	})
	logs := r.stderr.String()
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, logs)
	}
	if strings.Contains(logs, tok.PIN) {
		t.Fatal("the PIN is in cofferd's log")
	}
	// The canary scan of the data directory and the log, for the root key
	// the HSM unwraps.
	root, err := pkcs11RootKey(dataDir, PKCS11SealConfig{Module: tok.Module, TokenLabel: tok.Label, PIN: tok.PIN})
	if err != nil {
		t.Fatal(err)
	}
	assertNoKey(t, dataDir, logs, root)

	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"wrong pin":   {map[string]string{"COFFER_SEAL_PKCS11_PIN": "9999-not-the-pin"}, args, "CKR_PIN_INCORRECT"},
		"wrong token": {env, pkcs11Args(t, dir, testkit.FreeAddr(t), "", softhsm.Token{Module: tok.Module, Label: "no-such-token"}), "no-such-token"},
	} {
		r := start(t, tc.env, tc.args...)
		if code := r.exit(t); code != 1 {
			t.Errorf("%s: exit %d, want 1", name, code)
		}
		msg := r.stderr.String()
		if !strings.Contains(msg, "unseal") || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %q, want an unseal error naming %q", name, msg, tc.want)
		}
		if strings.Contains(msg, "9999-not-the-pin") || strings.Contains(msg, tok.PIN) {
			t.Errorf("%s: the error quotes a PIN: %q", name, msg)
		}
	}
}

// TestMigrateSealFileToPKCS11: `cofferd operator migrate-seal --to pkcs11`
// wraps a file-sealed node's root key under a key it makes in a SoftHSM2
// token; the node then starts with seal.type pkcs11, unsealed by the
// token, and reads the secret written under the file seal.
func TestMigrateSealFileToPKCS11(t *testing.T) {
	tok := softhsm.New(t, "coffer-migrate", "2468-user-pin")
	dir := t.TempDir()
	keyFile := fileSealNode(t, dir, "migrate/hsm", "written under the key file")
	env := rootEnv(map[string]string{"COFFER_SEAL_PKCS11_PIN": tok.PIN})
	var out, errOut bytes.Buffer
	args := []string{"operator", "migrate-seal", "--data-dir", filepath.Join(dir, "data"), "--from-key-file", keyFile,
		"--to", "pkcs11", "--pkcs11-module", tok.Module, "--pkcs11-token-label", tok.Label}
	if code := run(t.Context(), args, &out, &errOut, func(k string) string { return env[k] }); code != 0 {
		t.Fatalf("migrate-seal: exit %d %q", code, errOut.String())
	}
	grpcAddr := testkit.FreeAddr(t)
	r := start(t, env, pkcs11Args(t, dir, grpcAddr, "", tok)...)
	r.waitFor(t, &r.stderr, "node ready")
	if got := readSecret(t, grpcAddr, "migrate/hsm"); got != "written under the key file" {
		t.Fatalf("after the migration: %q", got)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestPKCS11Rewrap: a running node with the pkcs11 seal re-wraps its root
// key under another key of the token (Rekey with new_key_label, which it
// makes); seal.json names the new key with the same check value, a
// Shamir-style rekey is refused, and after a restart the node unseals with
// the new key and reads the data written before.
func TestPKCS11Rewrap(t *testing.T) {
	tok := softhsm.New(t, "coffer-rewrap", "1357-user-pin")
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	env := rootEnv(map[string]string{"COFFER_SEAL_PKCS11_PIN": tok.PIN})
	var out, errOut bytes.Buffer
	initArgs := []string{"operator", "init", "--data-dir", dataDir, "--seal", "pkcs11", "--pkcs11-module", tok.Module, "--pkcs11-token-label", tok.Label}
	if code := run(t.Context(), initArgs, &out, &errOut, func(k string) string { return env[k] }); code != 0 {
		t.Fatalf("operator init: exit %d: %s", code, errOut.String())
	}
	before, _, err := readSealFile(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := testkit.FreeAddr(t)
	args := pkcs11Args(t, dir, grpcAddr, "", tok)
	r := start(t, env, args...)
	r.waitFor(t, &r.stderr, "node ready")
	value := "wrapped twice"
	if _, err := secretsClient(t, grpcAddr).CreateSecret(t.Context(), &cofferv1.CreateSecretRequest{Name: "hsm/rewrap", SecretString: &value,
		ClientRequestToken: "token-rewrap-00000000000000000000000001"}); err != nil {
		t.Fatal(err)
	}
	seal := cofferv1.NewSealServiceClient(rootConn(t, grpcAddr))
	if _, err := seal.Rekey(t.Context(), &cofferv1.RekeyRequest{Init: true, NewShares: 3, NewThreshold: 2}); err == nil || !strings.Contains(err.Error(), "no key shares") {
		t.Fatalf("a shares rekey of a pkcs11 seal: %v, want a refusal", err)
	}
	resp, err := seal.Rekey(t.Context(), &cofferv1.RekeyRequest{NewKeyLabel: "coffer-root-2026"})
	if err != nil || !resp.GetComplete() || resp.GetKeyLabel() != "coffer-root-2026" {
		t.Fatalf("rewrap: %v %v", resp, err)
	}
	after, _, err := readSealFile(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if after.KeyLabel != "coffer-root-2026" || after.Wrapped == before.Wrapped || after.Check != before.Check {
		t.Fatalf("seal.json after the rewrap: %+v, before %+v", after, before)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	r = start(t, env, args...)
	r.waitFor(t, &r.stderr, "node ready")
	if got := readSecret(t, grpcAddr, "hsm/rewrap"); got != value {
		t.Fatalf("after the rewrap and a restart: %q", got)
	}
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
