package kms

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	if err := GenerateKeyFile(path); err != nil {
		t.Fatalf("GenerateKeyFile: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
		t.Errorf("mode = %#o, want 0600", info.Mode().Perm())
	}
	contents, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(contents, []byte("\n")) {
		t.Errorf("key file does not end in a newline")
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(contents), "\n"))
	if err != nil || len(decoded) != 32 {
		t.Fatalf("key file decodes to %d bytes, %v; want 32", len(decoded), err)
	}

	key, err := FileSeal{Path: path}.RootKey()
	if err != nil {
		t.Fatalf("RootKey: %v", err)
	}
	if !bytes.Equal(key, decoded) {
		t.Error("RootKey does not return the key written")
	}
	if _, err := NewKeyring(key, testNow); err != nil {
		t.Errorf("NewKeyring with the generated key: %v", err)
	}

	err = GenerateKeyFile(path)
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second GenerateKeyFile err = %v, want fs.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(after, contents) {
		t.Errorf("second GenerateKeyFile changed the key file")
	}

	other := filepath.Join(t.TempDir(), "root.key")
	if err := GenerateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	if otherKey, _ := (FileSeal{Path: other}).RootKey(); bytes.Equal(otherKey, key) {
		t.Error("two generated key files hold the same key")
	}
}

func TestFileSealRefuses(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(randomBytes(t, 32))
	tests := []struct {
		name     string
		contents string
		mode     fs.FileMode
		dir      bool
	}{
		{name: "world readable", contents: good + "\n", mode: 0o644},
		{name: "group readable", contents: good + "\n", mode: 0o640},
		{name: "other writable", contents: good + "\n", mode: 0o602},
		{name: "short key", contents: base64.StdEncoding.EncodeToString(randomBytes(t, 16)) + "\n", mode: 0o600},
		{name: "long key", contents: base64.StdEncoding.EncodeToString(randomBytes(t, 33)) + "\n", mode: 0o600},
		{name: "empty file", contents: "", mode: 0o600},
		{name: "not base64", contents: strings.Repeat("!", 44) + "\n", mode: 0o600},
		{name: "url-safe base64", contents: base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)) + "\n", mode: 0o600},
		{name: "oversized file", contents: strings.Repeat("A", 8192), mode: 0o600},
		{name: "directory", dir: true},
		{name: "missing file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mode&0o077 != 0 && runtime.GOOS == "windows" {
				t.Skip("no Unix permissions on Windows")
			}
			path := filepath.Join(t.TempDir(), "root.key")
			switch {
			case tt.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case tt.mode != 0:
				if err := os.WriteFile(path, []byte(tt.contents), tt.mode); err != nil {
					t.Fatal(err)
				}
				// WriteFile's mode is filtered by the umask; set it exactly.
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			key, err := FileSeal{Path: path}.RootKey()
			if !errors.Is(err, ErrSealed) || key != nil {
				t.Fatalf("RootKey = %d bytes, %v; want nil, ErrSealed", len(key), err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the key file", err)
			}
			if tt.contents != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.contents)[:8]) {
				t.Errorf("error %q quotes the key file's contents", err)
			}
		})
	}
}

func TestFileSealAcceptsSurroundingWhitespace(t *testing.T) {
	want := randomBytes(t, 32)
	path := filepath.Join(t.TempDir(), "root.key")
	if err := os.WriteFile(path, []byte("  "+base64.StdEncoding.EncodeToString(want)+"\r\n\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	got, err := FileSeal{Path: path}.RootKey()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("RootKey = %d bytes, %v; want the 32 bytes written", len(got), err)
	}
}
