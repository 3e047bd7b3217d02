package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// WebIdentityIssuer is an OpenID Connect identity provider whose ID tokens
// Coffer accepts for AssumeRoleWithWebIdentity, as an IAM OIDC provider is
// in AWS: its issuer URL and the client ids (audiences) a token must carry
// one of. Coffer fetches its discovery document and signing keys (JWKS)
// over HTTPS, and caches the keys (refetched when a token names a key id it
// does not know).
type WebIdentityIssuer struct {
	// URL is the issuer, exactly as tokens' iss claim spells it; https.
	URL string
	// ClientIDs are the accepted audiences (AWS's client id list).
	ClientIDs []string
	// HTTPClient fetches discovery and keys; nil is a client with the
	// system's roots and a 10-second timeout.
	HTTPClient *http.Client
}

// Validate checks the issuer's configuration.
func (w WebIdentityIssuer) Validate() error {
	u, err := url.Parse(w.URL)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("web identity issuer %q must be an https URL without query or fragment", w.URL)
	case len(w.ClientIDs) == 0:
		return fmt.Errorf("web identity issuer %q needs at least one client id (audience)", w.URL)
	}
	return nil
}

// hostPath is the issuer as IAM names it in condition keys and provider
// ARNs: the URL without https://.
func (w WebIdentityIssuer) hostPath() string {
	return strings.TrimSuffix(strings.TrimPrefix(w.URL, "https://"), "/")
}

// providerARN is the Federated principal a trust policy names the issuer by.
func (w WebIdentityIssuer) providerARN(cfg Config) string {
	return fmt.Sprintf("arn:%s:iam::%s:oidc-provider/%s", cfg.Partition, cfg.AccountID, w.hostPath())
}

// webIdentities verifies ID tokens against the configured issuers; a
// provider's discovery is fetched on first use and kept once it succeeded.
type webIdentities struct {
	cfg Config
	now func() time.Time

	mu        sync.Mutex
	verifiers map[string]*oidc.IDTokenVerifier // issuer URL → verifier
}

// webIdentityClaims are what AssumeRoleWithWebIdentity needs of a token.
type webIdentityClaims struct {
	Issuer   WebIdentityIssuer
	Subject  string
	Audience string
}

// verify checks token's signature (the issuer's JWKS), issuer, expiry and
// audience, answering in STS's words.
func (w *webIdentities) verify(ctx context.Context, token string) (webIdentityClaims, error) {
	iss, ok := unverifiedIssuer(token)
	if !ok {
		return webIdentityClaims{}, apiErr(TypeInvalidIdentityToken, "The web identity token is not a well-formed JWT.")
	}
	idx := slices.IndexFunc(w.cfg.WebIdentityIssuers, func(c WebIdentityIssuer) bool { return c.URL == iss })
	if idx < 0 {
		return webIdentityClaims{}, apiErr(TypeInvalidIdentityToken, "No OpenIDConnect provider found in your account for %s", truncateClaim(iss))
	}
	issuer := w.cfg.WebIdentityIssuers[idx]
	v, err := w.verifier(issuer)
	if err != nil {
		return webIdentityClaims{}, &APIError{Type: TypeIDPCommunicationError, cause: err,
			Message: "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements"}
	}
	idt, err := v.Verify(ctx, token)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return webIdentityClaims{}, apiErr(TypeExpiredIdentityToken, "Token expired: current date/time %s must be before the expiration date/time %s",
				w.now().UTC().Format(time.RFC3339), expired.Expiry.UTC().Format(time.RFC3339))
		}
		return webIdentityClaims{}, &APIError{Type: TypeInvalidIdentityToken, cause: err,
			Message: "The web identity token could not be verified with the provider's keys."}
	}
	for _, aud := range idt.Audience {
		if slices.Contains(issuer.ClientIDs, aud) {
			return webIdentityClaims{Issuer: issuer, Subject: idt.Subject, Audience: aud}, nil
		}
	}
	return webIdentityClaims{}, apiErr(TypeInvalidIdentityToken, "Incorrect token audience")
}

func (w *webIdentities) verifier(issuer WebIdentityIssuer) (*oidc.IDTokenVerifier, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.verifiers[issuer.URL]; ok {
		return v, nil
	}
	client := issuer.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	// The provider keeps this context for its later key fetches: only
	// its client, never a request's cancellation.
	pctx := oidc.ClientContext(context.Background(), client)
	fetch, cancel := context.WithTimeout(pctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(fetch, issuer.URL)
	if err != nil {
		return nil, fmt.Errorf("discovery of %s: %w", issuer.URL, err)
	}
	var discovery struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&discovery); err != nil {
		return nil, fmt.Errorf("discovery of %s: %w", issuer.URL, err)
	}
	if u, err := url.Parse(discovery.JWKS); err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("discovery of %s: jwks_uri %q is not an https URL", issuer.URL, discovery.JWKS)
	}
	v := p.VerifierContext(pctx, &oidc.Config{SkipClientIDCheck: true, Now: w.now})
	w.verifiers[issuer.URL] = v
	return v, nil
}

// unverifiedIssuer reads a JWT's iss claim without verifying it, only to
// choose the issuer whose keys then verify the token.
func unverifiedIssuer(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(token) > 16<<10 {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(raw, &claims) != nil || claims.Iss == "" {
		return "", false
	}
	return claims.Iss, true
}

func truncateClaim(s string) string {
	if len(s) > 256 {
		return s[:256] + "…"
	}
	return s
}
