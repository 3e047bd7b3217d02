package main

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/storage/kms"
)

// Seals other than a key file keep their description in the data
// directory as seal.json, which `cofferd operator init` writes and every
// node of the region holds a copy of. It holds no key share, no root key
// and no PIN: for the shamir seal the threshold, the share count and the
// root key's check value; for the pkcs11 seal the HSM key's label, the
// root key wrapped under it and the check value. The HSM's module, token
// and PIN are the node's configuration (seal.pkcs11).

// sealFileName is the seal's description in the data directory.
const sealFileName = "seal.json"

// sealFile is seal.json.
type sealFile struct {
	// Type is "shamir" or "pkcs11".
	Type string `json:"type"`
	// Shares and Threshold describe the Shamir split.
	Shares    int `json:"shares,omitempty"`
	Threshold int `json:"threshold,omitempty"`
	// KeyLabel names the HSM key that wraps the root key, and Wrapped is
	// the root key it wrapped (base64), for the pkcs11 seal.
	KeyLabel string `json:"key_label,omitempty"`
	Wrapped  string `json:"wrapped_root_key,omitempty"`
	// Check is kms.RootKeyCheck of the root key, base64.
	Check string `json:"check"`
}

// readSealFile reads and checks dataDir's seal.json and returns it with
// its decoded check value.
func readSealFile(dataDir string) (*sealFile, []byte, error) {
	path := filepath.Join(dataDir, sealFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: %w (run `cofferd operator init --data-dir %s`, or copy seal.json from another node of the region)", err, dataDir)
	}
	var f sealFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil, fmt.Errorf("seal: %s is not a valid seal description", path)
	}
	switch {
	case f.Type == "shamir" && f.Threshold >= 2 && f.Shares >= f.Threshold:
	case f.Type == "pkcs11" && f.KeyLabel != "" && f.Wrapped != "":
	default:
		return nil, nil, fmt.Errorf("seal: %s is not a valid seal description", path)
	}
	check, err := base64.StdEncoding.DecodeString(f.Check)
	if err != nil || len(check) != 32 {
		return nil, nil, fmt.Errorf("seal: %s has no valid check value", path)
	}
	return &f, check, nil
}

// writeSealFile writes seal.json in dataDir. With replace unset it refuses
// to overwrite one (the error wraps fs.ErrExist); with it, it replaces the
// file atomically (a rename), so a crash leaves the old seal or the new
// one, never half of either.
func writeSealFile(dataDir string, f *sealFile, replace bool) (err error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := filepath.Join(dataDir, sealFileName)
	// The whole file is written and synced under a temporary name first,
	// then put in place in one step (a rename, or a link that fails if
	// seal.json exists when replace is false), so a failure leaves either
	// the old file or none — never a partial seal.json that blocks every
	// retry and the node's start.
	out, err := os.CreateTemp(dataDir, sealFileName+".new-*")
	if err != nil {
		return err
	}
	tmp := out.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := out.Chmod(0o600); err != nil {
		out.Close()
		return err
	}
	if _, err := out.Write(b); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if replace {
		err = os.Rename(tmp, path)
	} else if err = os.Link(tmp, path); err == nil {
		err = os.Remove(tmp)
	}
	if err != nil {
		return err
	}
	if d, derr := os.Open(dataDir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// pkcs11Config is the kms view of the node's seal.pkcs11 settings and
// seal.json's key label.
func pkcs11Config(c PKCS11SealConfig, keyLabel string) kms.PKCS11Config {
	return kms.PKCS11Config{Module: c.Module, TokenLabel: c.TokenLabel, PIN: c.PIN, KeyLabel: keyLabel}
}

// pkcs11RootKey has the HSM unwrap seal.json's root key and checks it.
func pkcs11RootKey(dataDir string, c PKCS11SealConfig) ([]byte, error) {
	desc, check, err := readSealFile(dataDir)
	if err != nil {
		return nil, err
	}
	if desc.Type != "pkcs11" {
		return nil, fmt.Errorf("seal: seal.type is pkcs11 but %s describes a %s seal", filepath.Join(dataDir, sealFileName), desc.Type)
	}
	wrapped, err := base64.StdEncoding.DecodeString(desc.Wrapped)
	if err != nil {
		return nil, fmt.Errorf("seal: %s has no valid wrapped root key", filepath.Join(dataDir, sealFileName))
	}
	root, err := kms.PKCS11Seal{Config: pkcs11Config(c, desc.KeyLabel), Wrapped: wrapped}.RootKey()
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(kms.RootKeyCheck(root), check) {
		clear(root)
		return nil, fmt.Errorf("%w: the HSM unwrapped a key that is not this seal's root key", kms.ErrSealed)
	}
	return root, nil
}
