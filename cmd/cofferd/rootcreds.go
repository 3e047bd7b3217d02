package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

var (
	// errCredentialsSymlink: the root credentials path is a symbolic link,
	// which cofferd will not write through.
	errCredentialsSymlink = errors.New("is a symbolic link; refusing to write the root credentials through it")
	// errCredentialsOther: the root credentials file exists and holds
	// another key, which may be the only copy of another region's root
	// secret.
	errCredentialsOther = errors.New("already exists and holds another access key (maybe the only copy of another region's root secret); move it away")
)

// credentialsBody is the root credentials file: the AWS shared-credentials
// format, so both the aws CLI (AWS_SHARED_CREDENTIALS_FILE) and coffer
// (COFFER_CREDENTIALS_FILE) read it.
func credentialsBody(id, secret string) []byte {
	return fmt.Appendf(nil, "# Coffer root principal, created on the region's first start.\n[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret)
}

// readCredentials reads the default profile's access key from a root
// credentials file. A symbolic link is refused, not followed.
func readCredentials(path string) (id, secret string, err error) {
	st, err := os.Lstat(path)
	if err != nil {
		return "", "", err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return "", "", fmt.Errorf("%s %w", path, errCredentialsSymlink)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "default" {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("%s holds no [default] access key", path)
	}
	return id, secret, nil
}

// writeCredentials keeps the root access key in path before the root
// principal is proposed, so that a committed root key always has its secret
// on disk: a temporary file beside it created with O_EXCL|O_NOFOLLOW and
// mode 0600 (never an existing file or link, never an old file's mode),
// written and fsynced, renamed over path, and the directory fsynced. It
// refuses a path that is a symbolic link, and a file that holds another
// key; a file that already holds this key (a start that saved it and
// stopped before the principal was committed) is left as it is.
func writeCredentials(path, id, secret string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s %w", path, errCredentialsSymlink)
		}
		gotID, gotSecret, rerr := readCredentials(path)
		if rerr == nil && gotID == id && gotSecret == secret {
			return nil
		}
		return fmt.Errorf("%s %w", path, errCredentialsOther)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+randomSuffix())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op once renamed
	if err := writeSynced(f, credentialsBody(id, secret)); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeSynced writes data to f with mode 0600 (the umask could have taken
// bits away, never added any), fsyncs and closes it.
func writeSynced(f *os.File, data []byte) error {
	err := f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// randomSuffix names a temporary file no one can have prepared.
func randomSuffix() string {
	return rand.Text()[:12]
}
