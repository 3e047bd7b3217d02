package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// When the root credentials file cannot be written, start-up fails with
// the reason, non-zero, and no root principal is created (its secret would
// be lost): a read-only directory, and a symbolic link where the file goes.
func TestRootCredentialsWriteFailureStopsStartup(t *testing.T) {
	t.Run("read-only directory", func(t *testing.T) {
		dir := t.TempDir()
		credDir := filepath.Join(dir, "creds")
		if err := os.Mkdir(credDir, 0o700); err != nil {
			t.Fatal(err)
		}
		readOnlyDir(t, credDir)
		args := append(serverArgs(t, dir), "--root-credentials-file", filepath.Join(credDir, "root-credentials"))
		r := start(t, nil, args...)
		if code := r.exit(t); code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", code, r.stderr.String())
		}
		if !strings.Contains(r.stderr.String(), "write the root credentials file") || !strings.Contains(r.stderr.String(), credDir) {
			t.Fatalf("stderr does not give the reason:\n%s", r.stderr.String())
		}
		if p := principals(t, filepath.Join(dir, "data")); len(p) != 0 {
			t.Fatalf("principals %v were created without their secret on disk", p)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "elsewhere")
		link := filepath.Join(dir, "root-credentials")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		args := append(serverArgs(t, dir), "--root-credentials-file", link)
		r := start(t, nil, args...)
		if code := r.exit(t); code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", code, r.stderr.String())
		}
		if !strings.Contains(r.stderr.String(), "is a symbolic link") {
			t.Fatalf("stderr does not give the reason:\n%s", r.stderr.String())
		}
		if _, err := os.Lstat(target); !os.IsNotExist(err) {
			t.Fatalf("the link's target was written: %v", err)
		}
		if p := principals(t, filepath.Join(dir, "data")); len(p) != 0 {
			t.Fatalf("principals %v were created without their secret on disk", p)
		}
	})
}

// The file is written before the principal is proposed, private, and in
// the format the aws CLI and coffer read; a file a start wrote before it
// stopped short of committing the principal is that principal's key.
func TestRootCredentialsWrittenFirstAndReused(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "data", "root-credentials")
	const id, secret = "AKIAREUSEDROOTKEY001", "reused/root/secret/access/key/000000001"
	if err := writeCredentials(creds, id, secret); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, serverArgs(t, dir)...)
	r.waitFor(t, &r.stderr, "node ready")
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, r.stderr.String())
	}
	p := principals(t, filepath.Join(dir, "data"))
	if len(p) != 1 || p[0].Principal.GetName() != "root" || len(p[0].AccessKeyIDs) != 1 || p[0].AccessKeyIDs[0] != id {
		t.Fatalf("principals %v; want root with the file's key %s", p, id)
	}
	st, err := os.Stat(creds)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file %v, %v; want mode 0600", st, err)
	}
	gotID, gotSecret, err := readCredentials(creds)
	if err != nil || gotID != id || gotSecret != secret {
		t.Fatalf("file holds %q/%q, %v", gotID, gotSecret, err)
	}
}

// A file that holds another key is never overwritten: it may be the only
// copy of another region's root secret.
func TestRootCredentialsNeverOverwritten(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "root-credentials")
	if err := writeCredentials(creds, "AKIAOTHERREGIONROOT1", "other/region/root/secret/access/key/0001"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"COFFER_ROOT_ACCESS_KEY_ID": "AKIAFIXEDROOTKEY0001", "COFFER_ROOT_SECRET_ACCESS_KEY": "fixed/root/secret/access/key/00000000001"}
	r := start(t, env, append(serverArgs(t, dir), "--root-credentials-file", creds)...)
	if code := r.exit(t); code != 1 || !strings.Contains(r.stderr.String(), "holds another access key") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 and the reason", code, r.stderr.String())
	}
	if id, _, err := readCredentials(creds); err != nil || id != "AKIAOTHERREGIONROOT1" {
		t.Fatalf("the other key's file now holds %q, %v", id, err)
	}
}

func TestWriteCredentialsUnit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "root-credentials")
	if err := writeCredentials(path, "AKIAUNIT000000000001", "unit/secret/0000000000000000000000000001"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %v; want the file alone (no temporary left)", entries)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "[default]\naws_access_key_id = AKIAUNIT000000000001\n") {
		t.Fatalf("file:\n%s", raw)
	}
	// The same key again is fine (a restart before the commit).
	if err := writeCredentials(path, "AKIAUNIT000000000001", "unit/secret/0000000000000000000000000001"); err != nil {
		t.Fatal(err)
	}
}
