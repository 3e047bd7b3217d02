package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/cofferhq/coffer/server"
)

// WebIdentityIssuerConfig is one OIDC issuer (an IAM OIDC provider in AWS):
// its URL, the audiences its tokens must carry one of, and optionally the
// CA that signs its HTTPS certificate when it is not publicly trusted (a
// cluster's own issuer, such as a Kubernetes API server's).
type WebIdentityIssuerConfig struct {
	URL       string   `yaml:"url"`
	ClientIDs []string `yaml:"client_ids"`
	CAFile    string   `yaml:"ca_file"`
}

func (c Config) validateWebIdentity() []error {
	var errs []error
	for _, w := range c.WebIdentityIssuers {
		if err := (server.WebIdentityIssuer{URL: w.URL, ClientIDs: w.ClientIDs}).Validate(); err != nil {
			errs = append(errs, err)
		}
		if w.CAFile != "" {
			if _, err := loadCAPool(w.CAFile); err != nil {
				errs = append(errs, fmt.Errorf("web identity issuer %s: %w", w.URL, err))
			}
		}
	}
	return errs
}

// webIdentityIssuers builds the server's issuers; Validate has checked them.
func (c Config) webIdentityIssuers() []server.WebIdentityIssuer {
	var out []server.WebIdentityIssuer
	for _, w := range c.WebIdentityIssuers {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if w.CAFile != "" {
			if pool, err := loadCAPool(w.CAFile); err == nil {
				tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
		}
		out = append(out, server.WebIdentityIssuer{URL: w.URL, ClientIDs: w.ClientIDs,
			HTTPClient: &http.Client{Transport: tr, Timeout: 10 * time.Second}})
	}
	return out
}

func loadCAPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", path)
	}
	return pool, nil
}
