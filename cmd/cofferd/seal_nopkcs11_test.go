//go:build !pkcs11

package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestPKCS11NotBuilt: the default (static, cgo-free) cofferd refuses the
// pkcs11 seal with an error that names the build tag, both in the server's
// configuration and in operator init.
func TestPKCS11NotBuilt(t *testing.T) {
	dir := t.TempDir()
	r := start(t, nil, "server", "--node-id", "n1", "--data-dir", dir, "--seal-type", "pkcs11",
		"--seal-pkcs11-module", "/usr/lib/softhsm/libsofthsm2.so", "--seal-pkcs11-token-label", "t")
	if code := r.exit(t); code == 0 || !strings.Contains(r.stderr.String(), "-tags pkcs11") {
		t.Fatalf("server with seal.type pkcs11: exit %d %q, want a refusal naming the build tag", code, r.stderr.String())
	}
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"operator", "init", "--data-dir", dir, "--seal", "pkcs11", "--pkcs11-module", "m", "--pkcs11-token-label", "t"},
		&out, &errOut, func(string) string { return "" })
	if code != 1 || !strings.Contains(errOut.String(), "-tags pkcs11") {
		t.Fatalf("operator init --seal pkcs11: exit %d %q, want a refusal naming the build tag", code, errOut.String())
	}
}
