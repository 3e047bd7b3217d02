package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/storage/kms"
	"github.com/cofferhq/coffer/test/testkit"
)

// ageKeys makes n age identities and a recipients file of their public
// keys.
func ageKeys(t *testing.T, n int) ([]*age.X25519Identity, string) {
	t.Helper()
	var ids []*age.X25519Identity
	var file strings.Builder
	file.WriteString("# share holders, in share order\n")
	for range n {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		file.WriteString(id.Recipient().String() + "\n\n")
	}
	path := filepath.Join(t.TempDir(), "recipients.txt")
	if err := os.WriteFile(path, []byte(file.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return ids, path
}

// openShare decrypts an age-encrypted share (base64 of the age file) as its
// holder would, returning the share's base64 text.
func openShare(encrypted string, id age.Identity) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(encrypted)
	if err != nil {
		return "", err
	}
	r, err := age.Decrypt(bytes.NewReader(raw), id)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(r)
	return strings.TrimSuffix(string(b), "\n"), err
}

// openShares decrypts share i with ids[i], checking that no other identity
// opens it.
func openShares(t *testing.T, encrypted []string, ids []*age.X25519Identity) []string {
	t.Helper()
	if len(encrypted) != len(ids) {
		t.Fatalf("%d shares for %d holders", len(encrypted), len(ids))
	}
	var plain []string
	for i, e := range encrypted {
		p, err := openShare(e, ids[i])
		if err != nil {
			t.Fatalf("holder %d cannot open share %d: %v", i+1, i+1, err)
		}
		plain = append(plain, p)
		other := ids[(i+1)%len(ids)]
		var noMatch *age.NoIdentityMatchError
		if _, err := openShare(e, other); !errors.As(err, &noMatch) {
			t.Fatalf("another holder opened share %d: %v", i+1, err)
		}
	}
	return plain
}

// TestAgeEncryptedShares: operator init --age-recipients prints each share
// only encrypted to its holder's age key (one key per share, in order; a
// wrong count writes no seal); the holders' decrypted shares unseal the
// node; a rekey with age recipients returns the new shares encrypted the
// same way, and they combine to the same root key.
func TestAgeEncryptedShares(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	ids, recipients := ageKeys(t, 3)
	_, two := ageKeys(t, 2)

	var out, errOut bytes.Buffer
	initArgs := func(file string) []string {
		return []string{"operator", "init", "--data-dir", dataDir, "--shares", "3", "--threshold", "2", "--age-recipients", file}
	}
	if code := run(t.Context(), initArgs(two), &out, &errOut, func(string) string { return "" }); code != 2 || !strings.Contains(errOut.String(), "2 age recipients for 3 shares") {
		t.Fatalf("two recipients for three shares: exit %d %q", code, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, sealFileName)); !os.IsNotExist(err) {
		t.Fatalf("a refused init left seal.json: %v", err)
	}
	errOut.Reset()
	if code := run(t.Context(), initArgs(recipients), &out, &errOut, func(string) string { return "" }); code != 0 {
		t.Fatalf("operator init: exit %d %q", code, errOut.String())
	}
	for i, id := range ids {
		if !strings.Contains(out.String(), "share "+string(rune('1'+i))+" (age, to "+id.Recipient().String()+"): ") {
			t.Fatalf("share %d is not labelled with its recipient:\n%s", i+1, out.String())
		}
	}
	shares := openShares(t, parseShares(out.String()), ids)
	for _, s := range shares {
		if strings.Contains(out.String(), s) {
			t.Fatal("operator init printed a share in the clear")
		}
	}

	grpcAddr := testkit.FreeAddr(t)
	r := start(t, rootEnv(nil), shamirArgs(t, dir, grpcAddr, "")...)
	if resp := unsealShares(t, grpcAddr, shares[0], shares[2]); resp.GetSealed() {
		t.Fatalf("two decrypted shares: %v, want unsealed", resp)
	}
	r.waitFor(t, &r.stderr, "node ready")

	newIDs, newRecipients := ageKeys(t, 2)
	seal := cofferv1.NewSealServiceClient(rootConn(t, grpcAddr))
	rec, err := readRecipientsFile(newRecipients)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal.Rekey(t.Context(), &cofferv1.RekeyRequest{Init: true, NewShares: 3, NewThreshold: 2, AgeRecipients: rec}); err == nil || !strings.Contains(err.Error(), "2 age recipients for 3 shares") {
		t.Fatalf("rekey with 2 recipients for 3 shares: %v", err)
	}
	started, err := seal.Rekey(t.Context(), &cofferv1.RekeyRequest{Init: true, NewShares: 2, NewThreshold: 2, AgeRecipients: rec})
	if err != nil {
		t.Fatal(err)
	}
	var done *cofferv1.RekeyResponse
	for _, s := range []string{shares[1], shares[0]} {
		if done, err = seal.Rekey(t.Context(), &cofferv1.RekeyRequest{Nonce: started.GetNonce(), Share: s}); err != nil {
			t.Fatal(err)
		}
	}
	if done.GetComplete() || !done.GetVerificationRequired() || len(done.GetAgeRecipients()) != 2 || len(done.GetNewKeyShares()) != 2 {
		t.Fatalf("rekey after the current shares: %v, want the new shares handed out and verification required", done)
	}
	newShares := openShares(t, done.GetNewKeyShares(), newIDs)
	before, check, err := readSealFile(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if before.Shares != 3 {
		t.Fatalf("seal.json changed before the new shares were verified: %+v", before)
	}
	var verified *cofferv1.RekeyResponse
	for _, s := range newShares {
		if verified, err = seal.Rekey(t.Context(), &cofferv1.RekeyRequest{Nonce: done.GetNonce(), Share: s, Verify: true}); err != nil {
			t.Fatal(err)
		}
	}
	if !verified.GetComplete() {
		t.Fatalf("rekey after the new shares were entered back: %v", verified)
	}
	if after, _, err := readSealFile(dataDir); err != nil || after.Shares != 2 || after.Threshold != 2 {
		t.Fatalf("seal.json after the verification: %+v, %v", after, err)
	}
	var raw [][]byte
	for _, s := range newShares {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	root, err := kms.CombineRootKey(raw, check)
	if err != nil {
		t.Fatalf("the new shares do not combine to the root key: %v", err)
	}
	logs := r.stderr.String()
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	assertNoKey(t, dataDir, logs+out.String(), root)
	for _, s := range append(shares, newShares...) {
		if strings.Contains(logs, s) {
			t.Fatal("a key share is in cofferd's log")
		}
	}
}
