package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// web_identity_issuers: an https URL with client ids, and a readable PEM
// CA when one is named; the server gets a client that trusts that CA.
func TestWebIdentityConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "web_identity_issuers:\n  - url: https://oidc.example/k8s\n    client_ids: [coffer]\n")
	cfg, err := load(t, []string{"--config", good}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.serviceConfig().WebIdentityIssuers
	if len(got) != 1 || got[0].URL != "https://oidc.example/k8s" || got[0].ClientIDs[0] != "coffer" || got[0].HTTPClient == nil {
		t.Fatalf("service issuers %+v", got)
	}
	notPEM := write("ca.pem", "not a certificate")
	for body, want := range map[string]string{
		"web_identity_issuers:\n  - url: http://oidc.example\n    client_ids: [coffer]\n":                          "must be an https URL",
		"web_identity_issuers:\n  - url: https://oidc.example\n":                                                   "needs at least one client id",
		"web_identity_issuers:\n  - url: https://oidc.example\n    client_ids: [c]\n    ca_file: " + notPEM + "\n": "holds no PEM certificate",
	} {
		_, err := load(t, []string{"--config", write("bad.yaml", body)}, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", body, err, want)
		}
	}
}
