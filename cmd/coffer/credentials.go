package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// credentials returns the access key (and, for temporary credentials, the
// session token) to authenticate with, or empty strings to call without
// credentials (cofferd dev accepts that, and so does a server that knows
// the client certificate).
func (o *options) credentials() (id, secret, token string, err error) {
	if o.accessKeyID != "" || o.secretAccessKey != "" {
		if o.accessKeyID == "" || o.secretAccessKey == "" {
			return "", "", "", &usageError{msg: "COFFER_ACCESS_KEY_ID and COFFER_SECRET_ACCESS_KEY must be set together"}
		}
		return o.accessKeyID, o.secretAccessKey, o.sessionToken, nil
	}
	if o.certFile != "" && o.credentialsFile == "" && o.profile == "" {
		return "", "", "", nil // the client certificate identifies the caller
	}
	path, explicit := o.credentialsFile, o.credentialsFile != ""
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", "", nil
		}
		path = filepath.Join(home, ".coffer", "credentials")
	}
	profile := o.profile
	if profile == "" {
		profile = "default"
	}
	id, secret, token, err = readProfile(path, profile)
	if errors.Is(err, fs.ErrNotExist) && !explicit && o.profile == "" {
		return "", "", "", nil
	}
	if err != nil {
		return "", "", "", fmt.Errorf("credentials: %w", err)
	}
	return id, secret, token, nil
}

// readProfile reads one profile of an AWS shared-credentials style file:
// [name] sections with aws_access_key_id, aws_secret_access_key and
// optionally aws_session_token (the aws_ prefix is optional).
func readProfile(path, profile string) (id, secret, token string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", "", err
	}
	defer f.Close()
	section, found := "", false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(strings.TrimPrefix(line[1:len(line)-1], "profile "))
			found = found || section == profile
			continue
		}
		if section != profile {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimPrefix(strings.TrimSpace(k), "aws_") {
		case "access_key_id":
			id = strings.TrimSpace(v)
		case "secret_access_key":
			secret = strings.TrimSpace(v)
		case "session_token":
			token = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", "", err
	}
	if !found || id == "" || secret == "" {
		return "", "", "", fmt.Errorf("%s has no profile %q with an access key id and secret", path, profile)
	}
	return id, secret, token, nil
}
