package kms

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// rootKeySize is the size of a root key in bytes (AES-256).
const rootKeySize = 32

// maxKeyFileSize bounds how much of a key file is read; a real one is 45
// bytes, so anything larger is not a key file.
const maxKeyFileSize = 4096

// Seal releases the region's 32-byte root key. It is an interface so that
// other seals (Shamir shares, an external KMS) can be added beside FileSeal.
type Seal interface {
	// RootKey returns the root key, or an error wrapping ErrSealed.
	RootKey() ([]byte, error)
}

var _ Seal = FileSeal{}

// FileSeal reads the root key from a key file written by GenerateKeyFile: the
// standard base64 encoding of 32 random bytes and a newline. It is the seal
// for development and containers, where the file comes from a mounted secret.
type FileSeal struct {
	// Path is the key file's path.
	Path string
}

// RootKey reads and decodes the key file. Like ssh with a private key, it
// refuses a file that group or others may access: such a key must be
// considered disclosed, and starting anyway would hide that.
func (s FileSeal) RootKey() ([]byte, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: opening key file: %w", ErrSealed, err)
	}
	defer f.Close()

	// Stat the open file rather than the path, so the file checked is the
	// file read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: key file %s: %w", ErrSealed, s.Path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: key file %s is not a regular file", ErrSealed, s.Path)
	}
	// Windows has no Unix permission bits; os reports a synthetic mode there.
	if perm := info.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: key file %s has mode %#o, which lets group or others read it; it must be 0600 or stricter", ErrSealed, s.Path, perm)
	}

	encoded, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(encoded)
	if err != nil {
		return nil, fmt.Errorf("%w: reading key file %s: %w", ErrSealed, s.Path, err)
	}
	if len(encoded) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: key file %s is too large to be a key file", ErrSealed, s.Path)
	}
	encoded = bytes.TrimSpace(encoded)

	// The decode error is dropped on purpose: it quotes positions in the
	// key, and the message below says all an operator needs.
	key := make([]byte, base64.StdEncoding.DecodedLen(len(encoded)))
	n, err := base64.StdEncoding.Decode(key, encoded)
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("%w: key file %s is not valid base64", ErrSealed, s.Path)
	}
	if n != rootKeySize {
		clear(key)
		return nil, fmt.Errorf("%w: key file %s holds %d bytes, want %d", ErrSealed, s.Path, n, rootKeySize)
	}
	return key[:n], nil
}

// GenerateKeyFile writes a fresh random root key to path in the format
// FileSeal reads, with mode 0600. It refuses to overwrite an existing file
// (the error wraps fs.ErrExist): replacing a root key makes every keyring
// sealed under the old one unreadable.
func GenerateKeyFile(path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("kms: creating key file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("kms: closing key file %s: %w", path, cerr)
		}
		if err != nil {
			// Never leave a partial key behind for a later start to trip on.
			err = errors.Join(err, os.Remove(path))
		}
	}()

	key := make([]byte, rootKeySize)
	defer clear(key)
	rand.Read(key) // Never fails: crypto/rand crashes the program instead.

	line := make([]byte, base64.StdEncoding.EncodedLen(len(key))+1)
	defer clear(line)
	base64.StdEncoding.Encode(line, key)
	line[len(line)-1] = '\n'

	if _, err := f.Write(line); err != nil {
		return fmt.Errorf("kms: writing key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("kms: syncing key file %s: %w", path, err)
	}
	return nil
}
